"""YAML reading that keeps source positions, for rule and policy files alike.

Mappings and sequences come back as :class:`LocDict` / :class:`LocList`, which remember
their file, the line and column of themselves, of each key and of each value, and the
scalar node of each string value (so a condition error can be mapped to the exact line
inside a multi-line scalar). Lines and columns are 1-based. Problems of the YAML itself
(syntax, duplicate or non-string keys, a document that expands past :data:`MAX_VALUES` values
through aliases or nests deeper than :data:`MAX_DEPTH`) are reported as :class:`ConfigError`.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from runwatch.config.errors import ConfigError, Location


def node_location(source: str, node: Node) -> Location:
    """Where ``node`` starts in ``source``."""
    return Location(source, node.start_mark.line + 1, node.start_mark.column + 1)


class LocDict(dict[str, Any]):
    """A mapping that remembers where it and its keys/values are."""

    source: str
    line: int
    column: int
    key_lines: dict[str, int]
    key_nodes: dict[str, Node]
    value_nodes: dict[str, Node]

    @property
    def location(self) -> Location:
        """Where the mapping starts."""
        return Location(self.source, self.line, self.column)

    def key_location(self, key: str) -> Location:
        """Where ``key`` is (the mapping's own place when the key is missing)."""
        node = self.key_nodes.get(key)
        return node_location(self.source, node) if node is not None else self.location

    def value_location(self, key: str) -> Location:
        """Where the value of ``key`` starts (the key's place when it is missing)."""
        node = self.value_nodes.get(key)
        return node_location(self.source, node) if node is not None else self.key_location(key)

    def key_line(self, key: str) -> int:
        """Line of ``key`` (the mapping's own line when the key is missing)."""
        return self.key_lines.get(key, self.line)

    def value_line(self, key: str) -> int:
        """Line where the value of ``key`` starts."""
        node = self.value_nodes.get(key)
        return node.start_mark.line + 1 if node is not None else self.key_line(key)


class LocList(list[Any]):
    """A sequence that remembers the line of itself and of each item."""

    source: str
    line: int
    column: int
    item_lines: list[int]
    item_nodes: list[Node]

    def item_line(self, i: int) -> int:
        """Line of item ``i``."""
        return self.item_lines[i] if 0 <= i < len(self.item_lines) else self.line

    def item_location(self, i: int) -> Location:
        """Where item ``i`` starts (the sequence's own place when there is no such item)."""
        if 0 <= i < len(self.item_nodes):
            return node_location(self.source, self.item_nodes[i])
        return Location(self.source, self.line, self.column)

    @classmethod
    def of(cls, items: list[Any], source: str, line: int, column: int = 0) -> LocList:
        """A located list built in code (e.g. one entry standing for a list of one)."""
        out = cls(items)
        out.source, out.line, out.column = source, line, column
        out.item_lines, out.item_nodes = [line] * len(items), []
        return out


class _Loader(yaml.SafeLoader):
    """SafeLoader used only to compose nodes and construct scalars (the reference parser:
    its syntax error messages are the ones users see)."""


_LIBYAML = hasattr(yaml, "CSafeLoader")


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same over libyaml's parser where PyYAML has it (same nodes and marks, several
    times faster); a file it refuses is read again by :class:`_Loader` for the message."""


def _plain_str(loader: yaml.SafeLoader, node: Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


# YAML 1.1 resolves a bare "=" to the "value" tag; in rule files it is the operator.
_Loader.add_constructor("tag:yaml.org,2002:value", _plain_str)
_FastLoader.add_constructor("tag:yaml.org,2002:value", _plain_str)


def _timestamp(loader: yaml.SafeLoader, node: Node) -> Any:
    """A date or time; a scalar shaped like one that is none (``2026-13-01``) stays its text, for
    the reader of that key to refuse with its location."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except ValueError:
        return _plain_str(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
_FastLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


MAX_VALUES = 250_000
"""Values one document may expand to (aliases repeat what they name: a "billion laughs" stops here)."""
MAX_DEPTH = 64
"""Levels of nested mappings and sequences one document may have."""


class _Bound(Exception):
    """A document over :data:`MAX_VALUES` or :data:`MAX_DEPTH`, at ``node``."""

    def __init__(self, node: Node, message: str, *, expansion: bool) -> None:
        super().__init__(message)
        self.node = node
        self.expansion = expansion  # placed at the top-level entry that expands, not deep in an anchor


class _Budget:
    """What is left of one document's allowance while it is built."""

    def __init__(self) -> None:
        self.values = MAX_VALUES

    def take(self, node: Node, depth: int) -> None:
        self.values -= 1
        if self.values < 0:
            raise _Bound(node, f"the document expands to more than {MAX_VALUES} values (aliases repeated?)",
                         expansion=True)
        if depth > MAX_DEPTH:
            raise _Bound(node, f"the document is nested deeper than {MAX_DEPTH} levels", expansion=False)


def _build(node: Node, loader: yaml.SafeLoader, errors: list[ConfigError], source: str,
           budget: _Budget | None = None, depth: int = 0) -> Any:
    budget = budget if budget is not None else _Budget()
    budget.take(node, depth)
    if isinstance(node, ScalarNode):
        return loader.construct_object(node, deep=True)
    depth += 1
    if isinstance(node, SequenceNode):
        seq = LocList(_build(item, loader, errors, source, budget, depth) for item in node.value)
        seq.source, seq.line, seq.column = source, node.start_mark.line + 1, node.start_mark.column + 1
        seq.item_lines = [item.start_mark.line + 1 for item in node.value]
        seq.item_nodes = list(node.value)
        return seq
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)
        out = LocDict()
        out.source, out.line, out.column = source, node.start_mark.line + 1, node.start_mark.column + 1
        out.key_lines, out.key_nodes, out.value_nodes = {}, {}, {}
        for knode, vnode in node.value:
            key = _build(knode, loader, errors, source, budget, depth)
            line, column = knode.start_mark.line + 1, knode.start_mark.column + 1
            if not isinstance(key, str):
                errors.append(ConfigError(source, line, f"mapping key {key!r} is not a string", column=column))
                continue
            if key in out:
                errors.append(ConfigError(source, line, f"duplicate key {key!r}", column=column))
                continue
            try:
                out[key] = _build(vnode, loader, errors, source, budget, depth)
            except _Bound as exc:
                if exc.expansion and depth == 1:
                    exc.node = knode
                raise
            out.key_lines[key] = line
            out.key_nodes[key] = knode
            out.value_nodes[key] = vnode
        return out
    return None


def load_yaml_documents(text: str, source: str, errors: list[ConfigError]) -> list[Any]:
    """Every YAML document in ``text`` as located builtins; problems go to ``errors``."""
    found: list[ConfigError] = []
    docs, refused = _load(_FastLoader(text), source, found)
    if refused and _LIBYAML:
        found = []
        docs, _ = _load(_Loader(text), source, found)
    errors.extend(found)
    return docs


def _load(loader: yaml.SafeLoader, source: str, errors: list[ConfigError]) -> tuple[list[Any], bool]:
    """Documents read by ``loader`` and whether the parser refused the text."""
    docs: list[Any] = []
    refused = True
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                docs.append(_build(node, loader, errors, source))
        refused = False
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        column = mark.column + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        errors.append(ConfigError(source, line, f"YAML syntax error: {problem}", column=column))
    except yaml.YAMLError as exc:
        errors.append(ConfigError(source, 1, f"YAML error: {str(exc).splitlines()[0]}"))
    except _Bound as exc:
        where = node_location(source, exc.node)
        errors.append(ConfigError(source, where.line, str(exc), column=where.column))
        refused = False  # the text parsed: the other parser would only say the same
    except RecursionError:
        mark = loader.get_mark() if hasattr(loader, "get_mark") else None
        line = mark.line + 1 if mark is not None else 1
        errors.append(ConfigError(source, line, f"the document is nested deeper than {MAX_DEPTH} levels"))
        refused = False
    finally:
        loader.dispose()
    return docs, refused


def scalar_source(node: Node | None, text: str) -> tuple[str, int, int] | None:
    """The raw source text of a scalar value node, its first line and the column of its first character.

    For block scalars (``|``, ``>``) the indicator line is skipped (the text then starts at
    column 1 of the next line); quotes become spaces so offsets stay those of the file.
    """
    if not isinstance(node, ScalarNode):
        return None
    raw = text[node.start_mark.index:node.end_mark.index]
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    if node.style in ("|", ">"):
        nl = raw.find("\n")
        if nl < 0:
            return None
        raw, line, column = raw[nl + 1:], line + 1, 1
    elif node.style in ('"', "'"):
        raw = " " + raw[1:-1] + " "  # keep offsets; quotes become spaces
    return raw, line, column

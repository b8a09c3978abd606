"""YAML reading that keeps source lines, and the located error type.

Mappings and sequences come back as :class:`LocDict` / :class:`LocList`, which remember
the line of themselves, of each key and of each value, and the scalar node of each string
value (so a condition error can be mapped to the exact line inside a multi-line scalar).
Lines are 1-based.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


@dataclass(frozen=True, slots=True)
class RuleError:
    """One located problem in a rule file; ``str()`` is the one-line ``file:line: message``."""

    file: str
    line: int
    message: str
    rule: str | None = None  # the entry's name, when known

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RuleLoadError(Exception):
    """Rules failed to load; ``errors`` holds every located error (collected in one pass)."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = list(errors)
        first = str(self.errors[0]) if self.errors else "no errors"
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(first + more)


class LocDict(dict[str, Any]):
    """A mapping that remembers where it and its keys/values are."""

    line: int
    key_lines: dict[str, int]
    value_nodes: dict[str, Node]

    def key_line(self, key: str) -> int:
        """Line of ``key`` (the mapping's own line when the key is missing)."""
        return self.key_lines.get(key, self.line)

    def value_line(self, key: str) -> int:
        """Line where the value of ``key`` starts."""
        node = self.value_nodes.get(key)
        return node.start_mark.line + 1 if node is not None else self.key_line(key)


class LocList(list[Any]):
    """A sequence that remembers the line of itself and of each item."""

    line: int
    item_lines: list[int]
    item_nodes: list[Node]

    def item_line(self, i: int) -> int:
        """Line of item ``i``."""
        return self.item_lines[i] if 0 <= i < len(self.item_lines) else self.line


class _Loader(yaml.SafeLoader):
    """SafeLoader used only to compose nodes and construct scalars."""


def _plain_str(loader: yaml.SafeLoader, node: Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


# YAML 1.1 resolves a bare "=" to the "value" tag; in rule files it is the operator.
_Loader.add_constructor("tag:yaml.org,2002:value", _plain_str)


def _build(node: Node, loader: _Loader, errors: list[RuleError], source: str) -> Any:
    if isinstance(node, ScalarNode):
        return loader.construct_object(node, deep=True)
    if isinstance(node, SequenceNode):
        seq = LocList(_build(item, loader, errors, source) for item in node.value)
        seq.line = node.start_mark.line + 1
        seq.item_lines = [item.start_mark.line + 1 for item in node.value]
        seq.item_nodes = list(node.value)
        return seq
    if isinstance(node, MappingNode):
        loader.flatten_mapping(node)
        out = LocDict()
        out.line = node.start_mark.line + 1
        out.key_lines, out.value_nodes = {}, {}
        for knode, vnode in node.value:
            key = _build(knode, loader, errors, source)
            line = knode.start_mark.line + 1
            if not isinstance(key, str):
                errors.append(RuleError(source, line, f"mapping key {key!r} is not a string"))
                continue
            if key in out:
                errors.append(RuleError(source, line, f"duplicate key {key!r}"))
                continue
            out[key] = _build(vnode, loader, errors, source)
            out.key_lines[key] = line
            out.value_nodes[key] = vnode
        return out
    return None


def load_yaml_documents(text: str, source: str, errors: list[RuleError]) -> list[Any]:
    """Every YAML document in ``text`` as located builtins; problems go to ``errors``."""
    loader = _Loader(text)
    docs: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                docs.append(_build(node, loader, errors, source))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        errors.append(RuleError(source, line, f"YAML syntax error: {problem}"))
    except yaml.YAMLError as exc:
        errors.append(RuleError(source, 1, f"YAML error: {str(exc).splitlines()[0]}"))
    finally:
        loader.dispose()
    return docs


def scalar_source(node: Node | None, text: str) -> tuple[str, int] | None:
    """The raw source text of a scalar value node and its first line (for locating tokens).

    For block scalars (``|``, ``>``) the indicator line is skipped.
    """
    if not isinstance(node, ScalarNode):
        return None
    raw = text[node.start_mark.index:node.end_mark.index]
    line = node.start_mark.line + 1
    if node.style in ("|", ">"):
        nl = raw.find("\n")
        if nl < 0:
            return None
        raw, line = raw[nl + 1:], line + 1
    elif node.style in ('"', "'"):
        raw = " " + raw[1:-1] + " "  # keep offsets; quotes become spaces
    return raw, line

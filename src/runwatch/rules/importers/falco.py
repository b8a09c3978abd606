"""Falco rule files to runwatch rules.

Files are read in the order given, as Falco reads them: a later file may append to or
override an earlier file's lists, macros and rules (``append: true`` and ``override:``
forms, ``enabled``-only entries), and a later plain definition replaces an earlier one.
``required_engine_version`` and ``required_plugin_versions`` entries are accepted and
ignored. Macros and lists are translated recursively and inlined, so every generated
runwatch rule stands alone. Conditions go through :mod:`falco_cond`.

Not thread-safe: one :class:`FalcoImporter` per import.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runwatch.config.errors import ConfigError
from runwatch.config.yamlsrc import LocDict, LocList, load_yaml_documents
from runwatch.rules.importers.falco_cond import (
    FIELD_MAP,
    SYSCALL_KINDS,
    Bool,
    Cmp,
    Const,
    FalcoSyntaxError,
    Not,
    Ref,
    Translator,
    Unsupported,
    emit,
    negate,
    parse,
    simplify,
)
from runwatch.rules.importers.report import NIST_HOST, NIST_NET, TACTICS, ImportedRule, attack_id, one_line, slug

LICENSE = "The Falco Authors, Apache License 2.0"

#: Falco priority -> runwatch severity.
PRIORITIES: dict[str, str] = {
    "emergency": "critical", "alert": "critical", "critical": "critical", "error": "high",
    "warning": "medium", "notice": "low", "informational": "info", "info": "info", "debug": "info",
}
_PLACEHOLDER = re.compile(r"%(\{)?([A-Za-z_][A-Za-z0-9_.]*(?:\[[^\]\s]*\])?)(?(1)\})|%")
_OUTPUT_EXTRA = {"evt.type": "kind", "evt.time": "evt.time", "container.id": "container.id", "user.name": "proc.user",
                 "container.privileged": "container.privileged", "proc.is_exe_upper_layer": "proc.exe_upper_layer",
                 "proc.is_exe_from_memfd": "proc.exe_memfd"}


@dataclass(slots=True)
class _Rule:
    name: str
    file: str
    line: int
    data: dict[str, Any]
    condition: str
    exceptions: list[Any] = field(default_factory=list)
    enabled: bool = True


def _strip_quotes(item: Any) -> str:
    text = str(item)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _override(d: LocDict, key: str) -> str | None:
    """``append`` / ``replace`` for ``key`` from an ``override:`` map or ``append: true``."""
    ov = d.get("override")
    if isinstance(ov, dict) and key in ov:
        return str(ov[key])
    if d.get("append") is True:
        return "append"
    return None


class FalcoImporter:
    """Collects Falco files (:meth:`add_text`), then translates every rule (:meth:`finish`)."""

    def __init__(self) -> None:
        self.lists: dict[str, list[Any]] = {}
        self.macros: dict[str, str] = {}
        self.rules: dict[str, _Rule] = {}
        self.problems: list[ImportedRule] = []  # file-level errors, as skipped records
        self.files: list[str] = []

    def problem(self, file: str, line: int, message: str) -> None:
        """Record a located file-level problem (it becomes a skipped record)."""
        rec = ImportedRule(slug("falco.", f"{Path(file).stem}_line_{line}"), f"{Path(file).name} line {line}",
                           "falco", file, line)
        rec.skip(f"{file}:{line}: {message}")
        self.problems.append(rec)

    def add_text(self, text: str, file: str) -> None:
        """Read one Falco rule file; problems are located and kept, other entries still load."""
        self.files.append(file)
        errors: list[ConfigError] = []
        docs = load_yaml_documents(text, file, errors)
        for err in errors:
            self.problem(err.file, err.line, err.message)
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, LocList):
                self.problem(file, getattr(doc, "line", 1), "a Falco rule file must be a YAML sequence")
                continue
            for i, item in enumerate(doc):
                if not isinstance(item, LocDict):
                    self.problem(file, doc.item_line(i), "an entry must be a mapping")
                    continue
                self.entry(item, file)

    def entry(self, d: LocDict, file: str) -> None:
        """Collect one list/macro/rule entry with Falco's append/override semantics."""
        if "list" in d:
            name, items = str(d["list"]), d.get("items") or []
            if not isinstance(items, list):
                self.problem(file, d.key_line("items"), f"list {name!r}: items must be a sequence")
                return
            if _override(d, "items") == "append" and name in self.lists:
                self.lists[name] = [*self.lists[name], *items]
            else:
                self.lists[name] = list(items)
        elif "macro" in d:
            name, cond = str(d["macro"]), d.get("condition")
            if not isinstance(cond, str):
                self.problem(file, d.line, f"macro {name!r}: condition must be a string")
                return
            if _override(d, "condition") == "append" and name in self.macros:
                self.macros[name] = f"{self.macros[name]} {cond}"
            else:
                self.macros[name] = cond
        elif "rule" in d:
            self.rule_entry(d, file)
        elif not ({"required_engine_version", "required_plugin_versions"} & set(d)):
            self.problem(file, d.line, f"unknown entry with keys {', '.join(map(str, d))}")

    def rule_entry(self, d: LocDict, file: str) -> None:
        """A rule definition, append, override or enable/disable toggle."""
        name = str(d["rule"])
        prior = self.rules.get(name)
        if prior is not None and ("override" in d or d.get("append") is True or set(d) <= {"rule", "enabled"}):
            if isinstance(d.get("enabled"), bool):
                prior.enabled = d["enabled"]
            cond = d.get("condition")
            if isinstance(cond, str):
                prior.condition = f"{prior.condition} {cond}" if _override(d, "condition") == "append" else cond
            exc = d.get("exceptions")
            if isinstance(exc, list):
                prior.exceptions = [*prior.exceptions, *exc] if _override(d, "exceptions") == "append" else exc
            for key in ("output", "desc", "priority", "tags"):
                if key in d and _override(d, key) != "append":
                    prior.data[key] = d[key]
            return
        if set(d) <= {"rule", "enabled"}:
            self.problem(file, d.line, f"rule {name!r} is enabled/disabled but was never defined")
            return
        cond = d.get("condition")
        exc = d.get("exceptions")
        self.rules[name] = _Rule(name, file, d.line, dict(d), cond if isinstance(cond, str) else "",
                                 list(exc) if isinstance(exc, list) else [], d.get("enabled", True) is not False)

    # -- translation -----------------------------------------------------------------------
    def flat_lists(self) -> dict[str, list[str]]:
        """Every list with nested list names expanded and item quotes removed."""
        out: dict[str, list[str]] = {}

        def flat(name: str, seen: tuple[str, ...]) -> list[str]:
            if name in out:
                return out[name]
            items: list[str] = []
            for item in self.lists[name]:
                text = _strip_quotes(item)
                if text in self.lists and text not in seen:
                    items.extend(flat(text, (*seen, text)))
                else:
                    items.append(text)
            out[name] = items
            return items

        for name in self.lists:
            flat(name, (name,))
        return out

    def finish(self) -> list[ImportedRule]:
        """One record per rule (and per file-level problem), in source order."""
        lists = self.flat_lists()
        thunks: dict[str, Callable[[], Any]] = {name: functools.partial(parse, cond)
                                                 for name, cond in self.macros.items()}
        tr = Translator(lists, thunks)
        out: list[ImportedRule] = list(self.problems)
        used: set[str] = set()
        for r in self.rules.values():
            name = slug("falco.", r.name)
            n = 2
            while name in used:
                name, n = f"{slug('falco.', r.name)}_{n}"[:128], n + 1
            used.add(name)
            out.append(self.translate(tr, r, name))
        return out

    def translate(self, tr: Translator, r: _Rule, name: str) -> ImportedRule:
        """One Falco rule to a record (loaded with its entry, or skipped with a reason)."""
        rec = ImportedRule(name, r.name, "falco", r.file, r.line,
                           meta={"falco_rule": r.name, "license": "Apache-2.0", "file": Path(r.file).name})
        source = r.data.get("source", "syscall")
        if source != "syscall":
            rec.skip(f"source {source} is not supported (runwatch imports syscall rules)")
            return rec
        if not r.condition.strip():
            rec.skip("rule has no condition")
            return rec
        tr.empty_lists.clear()
        try:
            ast = parse(r.condition)
            node = tr.node(ast)
            exc = self.exceptions(r)
            if exc is not None:
                node = simplify("and", [node, negate(tr.node(exc))])
        except Unsupported as e:
            rec.skip(str(e))
            return rec
        except FalcoSyntaxError as e:
            rec.skip(f"condition does not parse: {e}")
            return rec
        if isinstance(node, Const):
            if node.value:
                rec.skip("condition is always true once terms runwatch decides are folded")
            else:
                missing = sorted(self.syscalls(ast, set()) - set(SYSCALL_KINDS))
                empty = sorted(tr.empty_lists)
                if missing:
                    rec.skip(f"can never match: runwatch reports no events for syscalls {', '.join(missing)}")
                elif empty:
                    rec.skip(f"can never match: it needs a value from the empty list {', '.join(empty)} "
                             "(a template to customise)")
                else:
                    rec.skip("condition is always false in runwatch")
            return rec
        rec.entry = self.entry_for(r, name, emit(node))
        return rec

    def exceptions(self, r: _Rule) -> Any:
        """The rule's exceptions as one Falco AST (``or`` of items), or None."""
        alts: list[Any] = []
        for ex in r.exceptions:
            if not isinstance(ex, dict):
                raise Unsupported("an exception must be a mapping")
            fields, comps, values = ex.get("fields"), ex.get("comps"), ex.get("values") or []
            if isinstance(fields, str):
                comp = str(comps or "in")
                alts.append(Cmp(fields, comp, tuple(_strip_quotes(v) for v in values), True))
                continue
            if not isinstance(fields, list) or not isinstance(values, list):
                raise Unsupported(f"exception {ex.get('name')!r}: fields and values must be lists")
            comp_list = comps if isinstance(comps, list) else ["="] * len(fields)
            for tup in values:
                if not isinstance(tup, list) or len(tup) != len(fields):
                    raise Unsupported(f"exception {ex.get('name')!r}: each value needs one item per field")
                terms = []
                for f, c, v in zip(fields, comp_list, tup, strict=False):
                    vals = tuple(_strip_quotes(x) for x in v) if isinstance(v, list) else (_strip_quotes(v),)
                    terms.append(Cmp(str(f), str(c), vals, isinstance(v, list) or str(c) in ("in", "pmatch")))
                alts.append(terms[0] if len(terms) == 1 else Bool("and", tuple(terms)))
        if not alts:
            return None
        return alts[0] if len(alts) == 1 else Bool("or", tuple(alts))

    def syscalls(self, node: Any, seen: set[str]) -> set[str]:
        """Every ``evt.type`` value a condition names, through macros."""
        if isinstance(node, Cmp):
            return set(node.values or ()) if node.field == "evt.type" and node.op != "!=" else set()
        if isinstance(node, Bool):
            return set().union(*(self.syscalls(a, seen) for a in node.args))
        if isinstance(node, Not):
            return set()
        if isinstance(node, Ref) and node.name in self.macros and node.name not in seen:
            seen.add(node.name)
            try:
                return self.syscalls(parse(self.macros[node.name]), seen)
            except (FalcoSyntaxError, Unsupported):
                return set()
        return set()

    def entry_for(self, r: _Rule, name: str, condition: str) -> dict[str, Any]:
        """The runwatch rule mapping, with provenance and licence."""
        d = r.data
        tags = [str(t) for t in d.get("tags") or []]
        attack: list[str] = []
        for t in tags:
            aid = TACTICS.get(t[6:]) if t.startswith("mitre_") else attack_id(t)
            if aid is not None and aid not in attack:
                attack.append(aid)
        desc = one_line(d.get("desc") or "")
        credit = f"Falco rule '{r.name}' ({Path(r.file).name}); {LICENSE}."
        priority = str(d.get("priority", "warning")).lower()
        net = "net." in condition
        return {
            "rule": name,
            "desc": f"{desc} {credit}".strip(),
            "condition": condition,
            "output": self.output(str(d.get("output") or r.name)),
            "severity": PRIORITIES.get(priority, "medium"),
            "attack": attack,
            "mappings": {"owasp_agentic": [], "owasp_llm": [], "owasp_nhi": [],
                         "nist_csf": list(NIST_NET if net else NIST_HOST)},
            "enabled": r.enabled,
            "tags": ["falco", *tags, f"falco.rule:{one_line(r.name)}", "license:Apache-2.0"],
        }

    @staticmethod
    def output(text: str) -> str:
        """Falco output with placeholders mapped to runwatch fields (unmapped ones shown as ``n/a``)."""
        def sub(m: re.Match[str]) -> str:
            f = m.group(2)
            if f is None:
                return "%%"
            target = FIELD_MAP.get(f) or _OUTPUT_EXTRA.get(f)
            if target is None and f.startswith(("proc.aname[", "proc.aexe[", "proc.aexepath[")):
                target = f.replace("aexepath", "aexe")
            if target == "proc.anames":
                target = None
            return "%{" + target + "}" if target else "n/a"

        return _PLACEHOLDER.sub(sub, one_line(text))

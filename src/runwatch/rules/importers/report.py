"""The import report: one record per foreign rule (loaded or skipped with a reason).

Every record that claims ``loaded`` holds the runwatch YAML of its rule, and
:meth:`ImportReport.verify` has compiled that YAML with the runwatch loader, so a loaded
rule is one the engine accepts. Records are plain data and not thread-safe to mutate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from runwatch.rules.loader import load_texts

LOADED = "loaded"
SKIPPED = "skipped"

#: Default NIST CSF 2.0 subcategories: DE.CM-09 (computing runtime monitored) for every
#: host rule, DE.CM-01 (networks monitored) added for network rules.
NIST_HOST = ["DE.CM-09"]
NIST_NET = ["DE.CM-01", "DE.CM-09"]

#: ATT&CK tactic names (Sigma ``attack.<tactic>`` and Falco ``mitre_<tactic>`` tags) to ids.
TACTICS: dict[str, str] = {
    "reconnaissance": "TA0043",
    "resource_development": "TA0042",
    "initial_access": "TA0001",
    "execution": "TA0002",
    "persistence": "TA0003",
    "privilege_escalation": "TA0004",
    "defense_evasion": "TA0005",
    "credential_access": "TA0006",
    "discovery": "TA0007",
    "lateral_movement": "TA0008",
    "collection": "TA0009",
    "command_and_control": "TA0011",
    "exfiltration": "TA0010",
    "impact": "TA0040",
}
_TECHNIQUE = re.compile(r"^t(\d{4})(?:\.(\d{3}))?$", re.IGNORECASE)
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.:-]+")


def attack_id(tag: str) -> str | None:
    """``t1059.004`` -> ``T1059.004``, ``execution``/``command-and-control`` -> the tactic id, else None."""
    m = _TECHNIQUE.match(tag.strip())
    if m is not None:
        return f"T{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else "")
    return TACTICS.get(tag.strip().lower().replace("-", "_"))


def slug(prefix: str, text: str) -> str:
    """A runwatch rule name: ``prefix`` + ``text`` lower-cased, runs of odd characters as ``_``."""
    body = _NAME_BAD.sub("_", text.strip().lower()).strip("_") or "rule"
    return f"{prefix}{body}"[:128]


def one_line(text: str) -> str:
    """``text`` with all white space runs (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


@dataclass(slots=True)
class ImportedRule:
    """One foreign rule and what became of it.

    ``status`` is ``loaded`` or ``skipped``; ``reason`` is a one-line cause for a skip.
    ``entry`` is the runwatch rule as a YAML-ready mapping (empty when the rule could not be
    translated); ``meta`` keeps the original id, author, references and licence.
    """

    name: str
    title: str
    fmt: str  # "sigma" | "falco"
    file: str
    line: int
    status: str = LOADED
    reason: str = ""
    entry: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # ``file:line: what was left out``, one line each

    @property
    def location(self) -> str:
        """``file:line`` of the rule in its source."""
        return f"{self.file}:{self.line}"

    @property
    def yaml(self) -> str:
        """The generated runwatch YAML (a one-entry sequence), ``""`` when none was generated."""
        if not self.entry:
            return ""
        return dump_entries([self.entry])

    def skip(self, reason: str) -> None:
        """Mark the rule skipped with a one-line ``reason`` (the first reason wins)."""
        if self.status != SKIPPED:
            self.status = SKIPPED
            self.reason = one_line(reason)

    def warning_lines(self) -> list[str]:
        """``warning NAME  file:line: text`` for each warning of a loaded rule."""
        if self.status != LOADED:
            return []
        return [f"warning {self.name}  {w}" for w in self.warnings]

    def status_line(self) -> str:
        """One line: ``loaded  NAME  file:line`` or ``skipped NAME  file:line: reason``."""
        if self.status == LOADED:
            return f"loaded  {self.name}  {self.location}"
        return f"skipped {self.name}  {self.location}: {self.reason}"


@dataclass(frozen=True, slots=True)
class CorpusSummary:
    """Counts for one source file (Falco) or one path argument (Sigma)."""

    source: str
    fmt: str
    loaded: int
    skipped: int

    @property
    def total(self) -> int:
        """Rules seen."""
        return self.loaded + self.skipped

    @property
    def fraction(self) -> float:
        """Loaded share of the rules seen (0.0 for an empty corpus)."""
        return self.loaded / self.total if self.total else 0.0

    def line(self) -> str:
        """One summary line, e.g. ``sigma rules/linux: 103/139 loaded (74.1%), 36 skipped``."""
        return (f"{self.fmt} {self.source}: {self.loaded}/{self.total} loaded ({100 * self.fraction:.1f}%), "
                f"{self.skipped} skipped")


class _Dumper(yaml.SafeDumper):
    """Block style, no key sorting, long lines kept whole."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def dump_entries(entries: list[dict[str, Any]]) -> str:
    """Entries as a YAML sequence (keys in insertion order, one line per scalar)."""
    return yaml.dump(entries, Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=True,
                     default_flow_style=False)


@dataclass(slots=True)
class ImportReport:
    """The result of :func:`runwatch.rules.importers.import_rules`.

    ``rules`` in source order; ``corpora`` one summary per Falco file / Sigma path argument.
    """

    rules: list[ImportedRule] = field(default_factory=list)
    corpora: list[CorpusSummary] = field(default_factory=list)

    @property
    def loaded(self) -> list[ImportedRule]:
        """The rules that loaded."""
        return [r for r in self.rules if r.status == LOADED]

    @property
    def skipped(self) -> list[ImportedRule]:
        """The rules that were skipped."""
        return [r for r in self.rules if r.status == SKIPPED]

    def get(self, name: str) -> ImportedRule | None:
        """The record for runwatch rule ``name`` (or None)."""
        return next((r for r in self.rules if r.name == name), None)

    def verify(self) -> None:
        """Compile every loaded rule with the runwatch loader; a rule that fails is skipped with its error."""
        loaded = self.loaded
        if not loaded:
            return
        rs = load_texts([(dump_entries([r.entry for r in loaded]), "<import>")], skip_invalid=True)
        for r in loaded:
            if rs.get(r.name) is None:
                r.skip("runwatch rejects the translation: " + rs.skipped.get(r.name, "does not compile"))

    def summarise(self, groups: dict[str, list[ImportedRule]], fmt: str) -> None:
        """Append one :class:`CorpusSummary` per group (source -> its records)."""
        for source, records in groups.items():
            n = sum(1 for r in records if r.status == LOADED)
            self.corpora.append(CorpusSummary(source, fmt, n, len(records) - n))

    def to_yaml(self) -> str:
        """A runwatch rule file holding every loaded rule, with provenance comments."""
        head = [
            "# runwatch rules imported by `runwatch rules import`.",
            "# Sigma rules: SigmaHQ, Detection Rule License (DRL) 1.1,",
            "#   https://github.com/SigmaHQ/Detection-Rule-License (author and id kept in each rule).",
            "# Falco rules: The Falco Authors, Apache License 2.0.",
        ]
        head += [f"# {c.line()}" for c in self.corpora]
        parts = ["\n".join(head) + "\n"]
        for r in self.loaded:
            notes = "".join(f"# warning: {w}\n" for w in r.warnings)
            parts.append(f"\n# {r.fmt}: {r.title} ({r.location})\n{notes}" + r.yaml)
        if len(parts) == 1:
            parts.append("[]\n")
        return "".join(parts)

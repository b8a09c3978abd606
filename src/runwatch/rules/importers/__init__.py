"""Import foreign detection rules (SigmaHQ Linux rules, Falco rule files) as runwatch rules.

Public API::

    import_rules(paths, fmt="auto") -> ImportReport       # per rule: loaded, or skipped + reason
    ImportReport.to_yaml() -> str                         # a rule file load_rules accepts
    cli_import(paths, fmt, out) -> int                    # `runwatch rules import` body

Every rule reported ``loaded`` has been compiled by the runwatch loader. See docs/import.md.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from runwatch.rules.importers.report import CorpusSummary, ImportedRule, ImportReport

FORMATS = ("auto", "sigma", "falco")
_FALCO_HEAD = re.compile(r"^-\s+(rule|macro|list|required_engine_version|required_plugin_versions)\s*:", re.M)
_SIGMA_HEAD = re.compile(r"^(detection|logsource)\s*:", re.M)


class ImportError_(ValueError):
    """Bad arguments to an import (unknown format, missing path); one-line message."""


def detect_format(text: str) -> str | None:
    """``falco`` for a sequence of rule/macro/list entries, ``sigma`` for a rule mapping, else None."""
    if _FALCO_HEAD.search(text):
        return "falco"
    if _SIGMA_HEAD.search(text):
        return "sigma"
    return None


def _files(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[str, list[Path]]]:
    """Each path argument with its files (directories: every ``*.yml``/``*.yaml`` below, sorted)."""
    out: list[tuple[str, list[Path]]] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.suffix in (".yml", ".yaml") and q.is_file())
            out.append((str(p), files))
        elif p.is_file():
            out.append((str(p), [p]))
        else:
            raise ImportError_(f"{p}: no such file or directory")
    return out


def import_rules(paths: Iterable[str | os.PathLike[str]], fmt: str = "auto") -> ImportReport:
    """Import every rule in ``paths`` (files or directories) as runwatch rules.

    ``fmt`` is ``sigma``, ``falco`` or ``auto`` (decided per file from its content). Falco
    files are read together, in the order given, so later files may use and override
    earlier files' macros and lists. Raises :class:`ImportError_` for an unknown format or a
    missing path; problems inside files become skipped records with located reasons.
    Summaries: one per Falco file, one per Sigma path argument.
    """
    if fmt not in FORMATS:
        raise ImportError_(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    from runwatch.rules.importers.falco import FalcoImporter
    from runwatch.rules.importers.sigma import SigmaImporter

    sigma: SigmaImporter | None = None
    falco = FalcoImporter()
    sigma_groups: dict[str, list[ImportedRule]] = {}
    report = ImportReport()
    unknown: list[ImportedRule] = []
    for arg, files in _files(paths):
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                rec = ImportedRule(f.stem, f.name, fmt, str(f), 1)
                rec.skip(f"{f}:1: cannot read: {exc.strerror if isinstance(exc, OSError) else exc}")
                unknown.append(rec)
                continue
            kind = fmt if fmt != "auto" else detect_format(text)
            if kind == "falco":
                falco.add_text(text, str(f))
            elif kind == "sigma":
                sigma = sigma or SigmaImporter()
                sigma_groups.setdefault(arg, []).extend(sigma.import_text(text, str(f)))
            else:
                rec = ImportedRule(f.stem, f.name, "unknown", str(f), 1)
                rec.skip(f"{f}:1: neither a Sigma rule nor a Falco rule file")
                unknown.append(rec)
    falco_records = falco.finish() if falco.files else []
    for recs in sigma_groups.values():
        report.rules.extend(recs)
    report.rules.extend(falco_records)
    report.rules.extend(unknown)
    report.verify()
    report.summarise(sigma_groups, "sigma")
    by_file: dict[str, list[ImportedRule]] = {f: [] for f in falco.files}
    for r in falco_records:
        by_file.setdefault(r.file, []).append(r)
    report.summarise(by_file, "falco")
    return report


def cli_import(paths: Iterable[str | os.PathLike[str]], fmt: str = "auto", out: str | None = None,
               stream: TextIO | None = None, errors: TextIO | None = None) -> int:
    """``runwatch rules import``: one status line per rule, one summary line per corpus.

    Writes the loaded rules to ``out`` when given. Exit code: 0 when at least one rule
    loaded, 1 when none did, 2 for bad arguments or an unwritable output file (reported as
    one ``runwatch: error:`` line on ``errors``, standard error by default).
    """
    w = stream or sys.stdout
    err = errors or sys.stderr
    try:
        report = import_rules(paths, fmt)
    except ImportError_ as exc:
        print(f"runwatch: error: {exc}", file=err)
        return 2
    for r in report.rules:
        print(r.status_line(), file=w)
        for line in r.warning_lines():
            print(line, file=w)
    for c in report.corpora:
        print(c.line(), file=w)
    if out is not None:
        try:
            Path(out).write_text(report.to_yaml(), encoding="utf-8")
        except OSError as exc:
            print(f"runwatch: error: cannot write {out}: {exc.strerror}", file=err)
            return 2
        print(f"wrote {len(report.loaded)} rules to {out}", file=w)
    return 0 if report.loaded else 1


__all__ = [
    "FORMATS",
    "CorpusSummary",
    "ImportError_",
    "ImportReport",
    "ImportedRule",
    "cli_import",
    "detect_format",
    "import_rules",
]

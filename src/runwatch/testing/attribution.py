"""Measured tool-call attribution per framework and path, and the docs table made from it.

Tests that drive a real framework record one row per (framework, path) with
:func:`record`: how many tool calls the framework made and how many had every kernel event
of their work attributed to them. Rows are JSON lines appended to the file named by
``$RUNWATCH_ATTRIBUTION_RESULTS`` (default :data:`DEFAULT_RESULTS`, under the pytest
cache), so any test suite adds its rows the same way (paths: ``SDK``, ``zero-code``,
``OTLP``). The last row recorded for a (framework, path) wins.

``python -m runwatch.testing.attribution [RESULTS] [--write docs/frameworks.md]`` prints (or
writes) the markdown table; :func:`parse_table` reads one back (for the docs test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

RESULTS_ENV = "RUNWATCH_ATTRIBUTION_RESULTS"
DEFAULT_RESULTS = Path(".pytest_cache") / "runwatch-attribution.jsonl"
PATHS = ("SDK", "zero-code", "OTLP")
HEADER = "| Framework | Path | Tool calls attributed | Parallel calls in one turn |"
_RULE = "|---|---|---|---|"
BEGIN, END = "<!-- attribution-table:begin -->", "<!-- attribution-table:end -->"


@dataclass(frozen=True)
class Row:
    """One (framework, path) measurement."""

    framework: str
    path: str
    attributed: int
    calls: int
    parallel: int = 0  # the most calls one model turn made

    def cells(self) -> str:
        """The row as a markdown table line."""
        parallel = str(self.parallel) if self.parallel > 1 else "-"
        return f"| {self.framework} | {self.path} | {self.attributed}/{self.calls} | {parallel} |"


def results_path() -> Path:
    """``$RUNWATCH_ATTRIBUTION_RESULTS`` or :data:`DEFAULT_RESULTS`."""
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def record(row: Row, path: Path | None = None) -> None:
    """Append ``row`` to the results file (created with its directory if missing)."""
    if row.path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {row.path!r}")
    target = path or results_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as f:
        f.write(json.dumps(row.__dict__) + "\n")


def load(path: Path) -> list[Row]:
    """The rows of a results file, the last per (framework, path), sorted by framework then path."""
    rows: dict[tuple[str, str], Row] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = Row(**json.loads(line))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a result row: {exc}") from None
        rows[(row.framework, row.path)] = row
    return sorted(rows.values(), key=lambda r: (r.framework.lower(), PATHS.index(r.path)))


def render(rows: list[Row]) -> str:
    """The table (between its markers) for ``rows``."""
    return "\n".join([BEGIN, HEADER, _RULE, *(r.cells() for r in rows), END]) + "\n"


def parse_table(markdown: str) -> list[Row]:
    """The rows of the table between the markers in ``markdown``; ValueError if there is none."""
    if BEGIN not in markdown or END not in markdown:
        raise ValueError("no attribution table markers in the document")
    body = markdown.split(BEGIN, 1)[1].split(END, 1)[0]
    rows = []
    for line in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        attributed, _, calls = cells[2].partition("/")
        rows.append(Row(cells[0], cells[1], int(attributed), int(calls), 0 if cells[3] == "-" else int(cells[3])))
    return rows


def replace_table(markdown: str, rows: list[Row]) -> str:
    """``markdown`` with its table replaced by the one for ``rows``."""
    head, rest = markdown.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return head + render(rows).rstrip("\n") + tail


def main(argv: list[str] | None = None) -> int:
    """Print the table of a results file, or write it into a document."""
    parser = argparse.ArgumentParser(prog="python -m runwatch.testing.attribution", description=__doc__)
    parser.add_argument("results", nargs="?", type=Path, default=None, help="results file (JSON lines)")
    parser.add_argument("--write", type=Path, default=None, help="document whose table to replace")
    args = parser.parse_args(argv)
    source = args.results or results_path()
    try:
        rows = load(source)
        if args.write is None:
            sys.stdout.write(render(rows))
        else:
            args.write.write_text(replace_table(args.write.read_text(), rows))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

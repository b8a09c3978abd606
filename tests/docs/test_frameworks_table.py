"""docs/frameworks.md: its table lists every framework the frameworks tests measure, each fully attributed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runwatch.testing import attribution

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "frameworks.md").read_text()

MEASURED = {
    ("GenAI execute_tool spans (thread pool, thread.id)", "OTLP"),
    ("OpenInference (openai instrumentor, OITracer.tool)", "OTLP"),
    ("LangGraph ToolNode (ainvoke)", "zero-code"),
    ("LangGraph ToolNode (invoke)", "zero-code"),
    ("MCP stdio server (node, uninstrumented)", "zero-code"),
    ("MCP stdio server (python -I -S, uninstrumented)", "zero-code"),
    ("OpenAI Agents SDK (function_tool)", "zero-code"),
    ("openai chat loop (dispatch_tool_calls)", "SDK"),
}
"""The rows tests/frameworks records."""


def test_every_row_is_fully_attributed_and_the_tested_frameworks_are_listed() -> None:
    rows = attribution.parse_table(DOC)
    assert {(r.framework, r.path) for r in rows} == MEASURED
    assert [(r.framework, r.path) for r in rows if r.attributed != r.calls or r.calls == 0] == []
    assert {r.parallel for r in rows if r.framework.startswith(("LangGraph", "OpenAI Agents", "GenAI"))} == {3}


def test_the_table_is_what_the_results_render(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    for row in attribution.parse_table(DOC):
        attribution.record(row, results)
    assert attribution.render(attribution.load(results)) in DOC
    assert "docs/frameworks.md" in (ROOT / "README.md").read_text()


def test_the_table_matches_the_last_measured_run() -> None:
    results = attribution.results_path()
    if not os.environ.get(attribution.RESULTS_ENV) or not results.exists():
        pytest.skip(f"no measured results (set {attribution.RESULTS_ENV} to a frameworks test run's file)")
    measured = {(r.framework, r.path): (r.attributed, r.calls) for r in attribution.load(results)}
    documented = {(r.framework, r.path): (r.attributed, r.calls) for r in attribution.parse_table(DOC)}
    assert {k: v for k, v in documented.items() if k in measured} == measured, json.dumps(sorted(measured))


def test_bad_result_rows_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"framework": "x", "path": "SDK", "attributed": 1, "calls": 1}\n{"framework": 23}\n')
    with pytest.raises(ValueError) as info:
        attribution.load(bad)
    assert str(info.value).startswith(f"{bad}:2: not a result row") and "\n" not in str(info.value)
    assert attribution.main([str(bad)]) == 2
    with pytest.raises(ValueError, match="path must be one of"):
        attribution.record(attribution.Row("x", "sdk", 1, 1), bad)

"""Smoke test of bench/sensor_overhead.py: it builds, runs and reports (no timing checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "sensor_overhead.py"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=240, cwd=REPO)


def _bpf_program_names() -> set[str]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True)
    return {p.get("name", "") for p in json.loads(out.stdout or "[]")}


def test_bad_condition_is_one_line_error() -> None:
    res = _bench("--quick", "--only", "bare,bogus")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "sensor_overhead: unknown condition bogus; choose from bare,noop,runwatch,auditd,drain")
    assert res.stdout == ""


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF")
def test_quick_bare_and_noop_report() -> None:
    leftovers_before = set(Path("/tmp").glob("rw-bench-*"))
    res = _bench("--quick", "--only", "bare,noop")
    assert res.returncode == 0, res.stderr
    table, marker, blob = res.stdout.partition("--- json ---\n")
    assert marker, res.stdout
    report = json.loads(blob)

    assert report["params"]["rounds"] == 1
    assert report["params"]["ops"] == {"exec": 200, "open": 20000, "connect": 2000}
    assert report["drain"] is None
    assert report["targets"] == []  # no runwatch/auditd/drain figures to judge
    assert sorted(report["results"]) == ["connect", "exec", "open"]
    for workload, row in report["results"].items():
        assert sorted(row) == ["bare", "noop"]
        bare, noop = row["bare"], row["noop"]
        assert len(bare["runs"]) == 1 and len(noop["runs"]) == 1
        assert bare["ops_per_s"] > 0 and noop["ops_per_s"] > 0
        assert bare["ratio_to_bare"] == 1.0 and bare["slowdown"] == 1.0
        assert noop["vs_floor"] == 1.0
        assert noop["ratio_to_bare"] == pytest.approx(noop["ops_per_s"] / bare["ops_per_s"], rel=1e-3)
        # every row of the table is printed
        assert any(line.split()[:2] == [workload, "noop"] for line in table.splitlines())

    # cleaned up: no no-op program left attached, no temp files left behind
    assert not {n for n in _bpf_program_names() if n.startswith("rwb_")}
    assert set(Path("/tmp").glob("rw-bench-*")) <= leftovers_before

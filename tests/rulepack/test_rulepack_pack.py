"""The default rule pack: it loads, its mappings are complete, its own tests pass, and the
recorded live workloads replay to the same verdicts (no root needed)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import msgspec
import pytest

from runwatch.events import Event, from_json
from runwatch.rules import Engine, Rule, RuleSet, Sequence, load_rules, run_rule_tests
from runwatch.rules.default import DEFAULT_RULES_DIR, default_rule_paths

FIXTURES = Path(__file__).parent / "fixtures"
DOC = Path(__file__).resolve().parents[2] / "docs" / "rulepack.md"

ATTACK_ID = re.compile(r"^(T\d{4}(\.\d{3})?|TA\d{4}|AML\.T\d{4}(\.\d{3})?|AML\.TA\d{4})$")
MAPPING_ID = {
    "owasp_agentic": re.compile(r"^ASI(0[1-9]|10)$"),
    "owasp_llm": re.compile(r"^LLM(0[1-9]|10)$"),
    "owasp_nhi": re.compile(r"^NHI([1-9]|10)$"),
    "nist_csf": re.compile(r"^(GV|ID|PR|DE|RS|RC)\.[A-Z]{2}-\d{2}$"),
}


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    return load_rules(default_rule_paths())


def _ids(pack: RuleSet) -> list[str]:
    return [r.name for r in pack.rules] + [s.name for s in pack.sequences]


def _metas(pack: RuleSet) -> list:  # type: ignore[type-arg]
    return [r.meta for r in pack.rules] + [s.meta for s in pack.sequences]


def _fixture(path: Path) -> list[Event]:
    return [from_json(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line]


def test_pack_files_and_paths() -> None:
    paths = default_rule_paths()
    assert paths == sorted(DEFAULT_RULES_DIR.glob("*.yaml"))
    assert {p.name for p in paths} >= {"base.yaml", "execution.yaml", "secrets.yaml", "ai_agents.yaml"}
    assert all(p.parent == DEFAULT_RULES_DIR for p in paths)


def test_pack_loads_with_at_least_25_enabled_rules(pack: RuleSet) -> None:
    assert pack.errors == []
    assert len(pack.rules) == 57 and len(pack.sequences) == 7
    assert all(m.enabled for m in _metas(pack))
    assert len(set(_ids(pack))) == 64


def test_every_rule_has_complete_well_formed_mappings(pack: RuleSet) -> None:
    for meta in _metas(pack):
        assert meta.attack, f"{meta.name}: no ATT&CK/ATLAS ids"
        bad = [a for a in meta.attack if not ATTACK_ID.match(a)]
        assert not bad, f"{meta.name}: bad ids {bad}"
        assert set(meta.mappings) == set(MAPPING_ID), f"{meta.name}: mappings {sorted(meta.mappings)}"
        for key, rx in MAPPING_ID.items():
            values = meta.mappings[key]
            assert values, f"{meta.name}: empty {key}"
            assert all(rx.match(v) for v in values), f"{meta.name}: bad {key} {values}"
            assert len(set(values)) == len(values)
        assert any(v.startswith("DE.") for v in meta.mappings["nist_csf"]), meta.name
        assert meta.severity in ("low", "medium", "high", "critical")
        assert meta.desc, f"{meta.name}: no description"


def test_every_rule_has_in_file_tests_that_fire_and_stay_quiet(pack: RuleSet) -> None:
    entries: list[Rule | Sequence] = [*pack.rules, *pack.sequences]
    for r in entries:
        counts = [c.expect.count for c in r.tests]
        assert any(n is not None and n > 0 for n in counts), f"{r.name}: no firing test"
        assert 0 in counts, f"{r.name}: no quiet test"


def test_in_file_rule_tests_all_pass() -> None:
    results = run_rule_tests(default_rule_paths())
    assert len(results) == 203
    failed = [str(r) for r in results if not r.passed]
    assert failed == []


def _fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.jsonl.gz"))


def test_fixtures_cover_every_rule_both_ways(pack: RuleSet) -> None:
    names = {p.name for p in _fixture_files()}
    for rule in _ids(pack):
        assert f"{rule}.pos.jsonl.gz" in names, f"{rule}: no recorded positive"
        assert f"{rule}.neg.jsonl.gz" in names, f"{rule}: no recorded near-miss"
    assert len([n for n in names if n.startswith("benign.")]) == 4


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: p.name.removesuffix(".jsonl.gz"))
def test_recorded_workload_replays_to_its_verdict(path: Path, pack: RuleSet) -> None:
    events = _fixture(path)
    assert events
    fired = [a.rule for a in Engine(pack).process_batch(events)]
    subject, verdict = path.name.removesuffix(".jsonl.gz").split(".", 1)
    general = {r.meta.name for r in [*pack.rules, *pack.sequences] if "general" in r.meta.tags}
    if subject == "benign":
        assert fired == [], f"{path.name}: benign workload raised {fired}"
    elif subject in general:  # the general pack's workloads raise exactly their rule, or nothing
        assert fired == ([subject] if verdict.startswith("pos") else []), f"{path.name}: raised {fired}"
    elif verdict.startswith("pos"):
        assert subject in fired, f"{subject} did not fire on {path.name}: {fired}"
    else:
        assert subject not in fired, f"{subject} fired on its near-miss"


def _shift_last_step(events: list[Event], seq: Sequence, pack: RuleSet, gap_ns: int) -> list[Event]:
    """Move the sequence's last step (and everything after it) so it is ``gap_ns`` after the first."""
    alerts = [a for a in Engine(pack).process_batch(events) if a.rule == seq.name]
    assert len(alerts) == 1, f"{seq.name}: expected one alert, got {len(alerts)}"
    first_id, last_id = alerts[0].evidence[0], alerts[0].evidence[-1]
    by_id = {e.id: e for e in events}
    delta = by_id[first_id].time + gap_ns - by_id[last_id].time
    cut = next(i for i, e in enumerate(events) if e.id == last_id)
    return events[:cut] + [msgspec.structs.replace(e, time=e.time + delta) for e in events[cut:]]


def test_sequence_step_outside_the_window_does_not_fire(pack: RuleSet) -> None:
    assert len(pack.sequences) == 7
    for seq in pack.sequences:
        events = _fixture(FIXTURES / f"{seq.name}.pos.jsonl.gz")
        outside = _shift_last_step(events, seq, pack, seq.within_ns + 1_000_000)
        assert seq.name not in [a.rule for a in Engine(pack).process_batch(outside)], seq.name
        inside = _shift_last_step(events, seq, pack, seq.within_ns - 1_000_000)
        assert [a.rule for a in Engine(pack).process_batch(inside)].count(seq.name) == 1, seq.name


def test_rulepack_doc_lists_every_rule_with_its_severity(pack: RuleSet) -> None:
    text = DOC.read_text()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = line
    assert sorted(rows) == sorted(_ids(pack))
    for meta in _metas(pack):
        row = rows[meta.name]
        assert f"| {meta.severity} |" in row, f"{meta.name}: severity not {meta.severity} in the doc"
        for ident in [*meta.attack, *(v for vs in meta.mappings.values() for v in vs)]:
            assert ident in row, f"{meta.name}: {ident} missing from its doc row"

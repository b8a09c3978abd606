"""Precision: every default rule over a recorded benign corpus raises nothing.

The corpus (``fixtures/benign_corpus.jsonl.gz``) is about an hour of ordinary activity, compressed in
time, recorded once under the real sensor by ``scripts/record_benign_corpus.py`` (see
``docs/precision.md``): package installs, builds, git and Python tooling on the host, and AI
workloads in runc containers (a model server with workers and ``runc exec`` health probes,
an SDK agent reading its own token, a batch job). No root is needed to replay it.

The imported Falco and Sigma rules are run over it too; they are not held to zero, but the
noisiest are printed by name (``pytest -s``) so a change in their noise shows.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from runwatch.events import Event, from_json
from runwatch.rules import Engine, load_rules, load_texts
from runwatch.rules.default import default_rule_paths
from runwatch.rules.importers import import_rules
from runwatch.testing.fixtures import fixture_path, require_fixture

CORPUS = Path(__file__).parent / "fixtures" / "benign_corpus.jsonl.gz"
MAX_BYTES = 4 << 20


@pytest.fixture(scope="module")
def corpus() -> list[Event]:
    return [from_json(line) for line in gzip.decompress(CORPUS.read_bytes()).splitlines() if line]


def test_the_corpus_is_small_and_covers_host_and_ai_containers(corpus: list[Event]) -> None:
    assert CORPUS.stat().st_size < MAX_BYTES
    kinds = Counter(e.kind for e in corpus)
    assert kinds["process.exec"] > 500
    assert kinds["file.open"] > 0 and kinds["dns.query"] > 0 and kinds["net.connect"] > 0
    names = {e.container.name for e in corpus if e.container is not None}
    assert names >= {"model-server", "agent", "batch", "tooling"}
    roles = {e.role for e in corpus if e.role}
    assert roles >= {"model-server", "agent"}
    host_execs = {e.exe.rpartition("/")[2] for e in corpus if e.kind == "process.exec" and e.container is None}
    assert host_execs >= {"git", "make", "cc1", "tar", "bash"}, sorted(host_execs)
    probes = [e for e in corpus if e.kind == "process.exec" and e.container is not None
              and e.container.name == "model-server" and e.exe.endswith("busybox")]
    assert len(probes) >= 30  # runc exec health probes
    assert any(e.kind == "tool.start" for e in corpus)
    assert any(e.attrs and e.attrs.get("exe_is_runtime") for e in corpus)  # runc init, by inode


def test_the_default_packs_raise_nothing_on_the_corpus(corpus: list[Event]) -> None:
    pack = load_rules(default_rule_paths())
    assert pack.errors == []
    alerts = Engine(pack).process_batch(corpus)
    noisy = Counter(a.rule for a in alerts)
    assert alerts == [], f"default rules raised on benign activity: {noisy.most_common()}"


def test_the_noisiest_imported_rules_are_reported(corpus: list[Event]) -> None:
    falco, sigma = fixture_path("falco-rules"), fixture_path("sigma-linux")
    require_fixture(falco, sigma)
    report = import_rules([falco / "falco_rules.yaml", falco / "falco-incubating_rules.yaml",
                           falco / "falco-sandbox_rules.yaml"], "falco")
    sigma_report = import_rules([sigma], "auto")
    counts: Counter[str] = Counter()
    loaded = 0
    for rep in (report, sigma_report):
        rs = load_texts([(rep.to_yaml(), "imported.yaml")])
        assert rs.errors == []
        loaded += len(rs.rules) + len(rs.sequences)
        counts.update(a.rule for a in Engine(rs).process_batch(corpus))
    assert loaded > 0
    print(f"\nimported rules over the benign corpus ({len(corpus)} events, {loaded} rules): "
          f"{sum(counts.values())} alerts from {len(counts)} rules")
    for rule, n in counts.most_common(15):
        print(f"  {n:6d}  {rule}")

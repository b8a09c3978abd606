"""Names of short-lived containers: every event of a container that lived ~50 ms carries its name.

runc deletes a container's state (the only record of its name) when the container ends, often
before the pipeline has enriched its events. The resolver reads each container's state when the
runtime writes it, and keeps it, so names survive the container.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from runwatch.containers.runc import RuncContainer
from runwatch.enrich.containers import ContainerResolver
from runwatch.enrich.stage import Enrichment

pytestmark = pytest.mark.kernel

CONTAINERS = 1000
WORKERS = 4
EXECS = 5  # the container's sh, then four /bin/true


def _run_many(rootfs, prefix: str, count: int) -> list[str]:
    ids: list[str] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker(slot: int) -> None:
        for i in range(slot, count, WORKERS):
            c = RuncContainer(rootfs, name=f"{prefix}-{i}")
            try:
                res = c.run(["/bin/sh", "-c", "/bin/true; /bin/true; /bin/true; /bin/true"])
                if res.returncode != 0:
                    errors.append(res.stderr.decode(errors="replace"))
            finally:
                c.close()
            with lock:
                ids.append(c.id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return ids


def test_every_event_of_1000_short_lived_containers_carries_its_name(capture, runc_rootfs):
    late = ContainerResolver()  # enriches only after every container is gone: the worst lag
    assert late.watch_states()
    try:
        capture.record_raw = True
        ids = _run_many(runc_rootfs, "brief", CONTAINERS)
        raw = capture.raw_events()
        live = capture.settle()
        afterwards = Enrichment(containers=late, seed=False)(raw)
    finally:
        late.close()
    names: dict[str, str | None] = {}
    for label, events in (("live", live), ("afterwards", afterwards)):
        execs = [e for e in events if e.kind == "process.exec" and e.cgroup_id and e.vpid and e.vpid > 0
                 and e.exec_name in ("/bin/sh", "/bin/true")]
        per = Counter(e.container.id if e.container else None for e in execs)
        assert None not in per, (label, per[None])
        assert set(per) == set(ids), label
        assert sum(per.values()) >= CONTAINERS * EXECS - 5, (label, Counter(per.values()))  # a rare ring loss
        named = {e.container.id: e.container.name for e in execs if e.container}
        assert all(name and name.startswith("brief-") for name in named.values()), (
            label, sum(1 for name in named.values() if not name))
        assert len(set(named.values())) == CONTAINERS, label
        names.update(named)
    mine = [e for e in afterwards if e.container is not None and e.container.id in set(ids)]
    assert all(e.container is not None and e.container.name == names[e.container.id] for e in mine)

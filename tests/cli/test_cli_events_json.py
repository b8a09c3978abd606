"""``runwatch events --format json`` keeps ``uid`` and ``source`` at their defaults too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runwatch.events import Event
from runwatch.store.sqlite import SqliteStore

RUNWATCH = str(Path(sys.executable).with_name("runwatch"))


def test_events_json_always_has_uid_and_source(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    store = SqliteStore(str(db))
    store.write([Event(id="e1", time=1, kind="process.exec", pid=23, exe="/bin/true"),
                 Event(id="e2", time=3, kind="tool.start", source="sdk", pid=23, uid=1013),
                 Event(id="e3", time=5, kind="process.exit", source="proc", pid=23, uid=0)])
    store.close()
    res = subprocess.run([RUNWATCH, "events", "--db", str(db), "--format", "json"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(o["id"], o["uid"], o["source"]) for o in lines] == [("e1", 0, "kernel"), ("e2", 1013, "sdk"),
                                                                ("e3", 0, "proc")]

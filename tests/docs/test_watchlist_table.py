"""docs/watchlist.md: its table of default entries is DEFAULT_WATCHES, in order, with their flags."""

from __future__ import annotations

import re
from pathlib import Path

from runwatch.sensors.kernel.layout import WatchFlag
from runwatch.sensors.kernel.watchlist import DEFAULT_WATCHES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "watchlist.md").read_text()
ROW = re.compile(r"^\| `([^`]+)` \| ([a-z, ]+) \| (.+) \|$", re.M)
FLAG_NAMES = {"read": WatchFlag.READ, "write": WatchFlag.WRITE, "keys": WatchFlag.KEYS}


def test_the_table_is_the_default_list() -> None:
    rows = ROW.findall(DOC.split("## Default entries", 1)[1])
    documented = [(entry, sum(FLAG_NAMES[f.strip()] for f in flags.split(","))) for entry, flags, _ in rows]
    assert documented == [(w.prefix, int(w.flags)) for w in DEFAULT_WATCHES]
    assert len(documented) == 70


def test_every_entry_names_what_needs_it() -> None:
    assert all(need.strip() for _, _, need in ROW.findall(DOC))

"""The fleet rule pack: sequences that need the events of several nodes (``runwatch worker``).

A worker loads it with the default pack; on one host it never fires (``across: workload.node``
needs two nodes). Rule ids and mappings are in ``docs/fleet.md``.
"""

from __future__ import annotations

from pathlib import Path

FLEET_RULES_DIR: Path = Path(__file__).resolve().parent


def fleet_rule_paths() -> list[Path]:
    """The pack's rule files in load order."""
    return sorted(FLEET_RULES_DIR.glob("*.yaml"))

"""The default rule pack for containerised AI workloads (model servers, agents, plugin runners).

The pack is a directory of YAML rule files, one per theme (``base.yaml`` holds the shared
lists and macros operators extend with ``append: true``). Load it with::

    from runwatch.rules import Engine, load_rules
    from runwatch.rules.default import default_rule_paths

    engine = Engine(load_rules(default_rule_paths()))

The rule ids, what each detects and its framework mappings are listed in ``docs/rulepack.md``.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_RULES_DIR: Path = Path(__file__).resolve().parent
"""The directory holding the pack's ``*.yaml`` files."""


def default_rule_paths() -> list[Path]:
    """The pack's rule files in load order (name order, as the loader reads a directory)."""
    return sorted(DEFAULT_RULES_DIR.glob("*.yaml"))

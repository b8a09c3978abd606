"""docs/rules.md documents every field, operator and rule key the loader accepts."""

from __future__ import annotations

from pathlib import Path

from runwatch.rules import FIELDS, INDEXED_FIELDS
from runwatch.rules.collect import KEYS
from runwatch.rules.compiler import ALL_OPS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()


def test_every_field_is_documented() -> None:
    missing = [f for f in [*FIELDS, *INDEXED_FIELDS] if f"`{f}`" not in DOC]
    assert missing == []


def test_every_operator_and_key_is_documented() -> None:
    assert [op for op in sorted(ALL_OPS) if f"`{op}`" not in DOC] == []
    keys = sorted({k for ks in KEYS.values() for k in ks})
    assert [k for k in keys if f"`{k}`" not in DOC] == []

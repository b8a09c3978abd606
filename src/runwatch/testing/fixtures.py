"""Where the shared test corpora live (rule corpora, AgentDojo ground truth), from one place.

The corpora are not part of the repository: they sit in ``shared/fixtures`` beside (or above)
the checkout, or wherever ``$RUNWATCH_FIXTURES`` points. A test that needs one calls
:func:`require_fixture`: without it the test is skipped with the path it looked at, and under
CI (``CI=true``) it fails instead, so a CI run never passes by silently skipping a corpus.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES_ENV = "RUNWATCH_FIXTURES"
"""Environment variable naming the fixtures directory (overrides the search)."""


def fixtures_root() -> Path:
    """``$RUNWATCH_FIXTURES``, else the first ``shared/fixtures`` beside or above this checkout.

    When none exists, the nearest candidate (beside the checkout) is returned, so messages
    name a concrete path.
    """
    if os.environ.get(FIXTURES_ENV):
        return Path(os.environ[FIXTURES_ENV])
    here = Path(__file__).resolve()
    candidates = [p / "shared" / "fixtures" for p in here.parents]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[min(4, len(candidates) - 1)]  # src/runwatch/testing/fixtures.py -> beside the checkout


def fixture_path(*parts: str) -> Path:
    """A path below :func:`fixtures_root` (it need not exist)."""
    return fixtures_root().joinpath(*parts)


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set to true/1/yes)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_fixture(*paths: Path) -> None:
    """Skip the calling test unless every path exists; under CI, fail it instead."""
    missing = [str(p) for p in paths if not p.exists()]
    if not missing:
        return
    why = f"test fixtures missing: {', '.join(missing)} (set ${FIXTURES_ENV} to the fixtures directory)"
    if in_ci():
        pytest.fail(why, pytrace=False)
    pytest.skip(why)

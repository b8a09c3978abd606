"""pytest fixtures shared by the test suites.

Register from a conftest with ``pytest_plugins = ["runwatch.testing.pytest_plugin"]``.

* ``events`` (function): a fresh list of the 23 sample events of :func:`make_events`.
"""

from __future__ import annotations

import pytest

from runwatch.events import Event
from runwatch.testing.events import make_events


@pytest.fixture
def events() -> list[Event]:
    """A fresh list of the 23 sample events."""
    return make_events()

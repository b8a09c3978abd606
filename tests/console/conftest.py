"""Fixtures of the console tests: the synthetic store, a configured app and its token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_synthetic import TOKEN, write_store

from runwatch.console.app import ConsoleConfig
from runwatch.console.serve import ConsoleServer


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """The synthetic store."""
    return write_store(tmp_path / "events.db")[0]


@pytest.fixture
def cfg(store: Path, tmp_path: Path) -> ConsoleConfig:
    """A console over the synthetic store, answering challenges on a socket nobody serves."""
    return ConsoleConfig(db=str(store), token=TOKEN, acks=str(tmp_path / "acks.db"),
                         control_socket=str(tmp_path / "control.sock"), poll_s=0.05)


@pytest.fixture
def served(cfg: ConsoleConfig) -> Iterator[ConsoleServer]:
    """The console over the synthetic store, on a free loopback port."""
    with ConsoleServer(cfg, "127.0.0.1", 0) as server:
        yield server

"""The small protocol every event source follows, and the source registry.

Lifecycle: ``start()`` once, then ``poll(timeout)`` repeatedly (returns a batch, possibly
empty; ``None`` means the source has ended), then ``stop()`` which always runs.
``stats()`` reports counters such as events and drops; drops are never hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runwatch.events import Event


class Source(Protocol):
    """An event source: kernel sensor, proc-connector fallback, replay, ingest."""

    name: str

    def start(self) -> None: ...

    def poll(self, timeout: float) -> list[Event] | None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


SourceFactory = Callable[..., Source]
_REGISTRY: dict[str, SourceFactory] = {}


def register_source(name: str, factory: SourceFactory) -> None:
    """Register a source factory under ``name``; a second registration of a name is an error."""
    if name in _REGISTRY:
        raise ValueError(f"source {name!r} is already registered")
    _REGISTRY[name] = factory


def source_factory(name: str) -> SourceFactory:
    """Look up a registered source factory."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None

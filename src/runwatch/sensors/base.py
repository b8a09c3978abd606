"""The small protocol every event source follows, and the source registry.

Lifecycle: a source is built unstarted, then ``start()`` once, ``poll(timeout)`` repeatedly
(returns a batch, possibly empty; ``None`` means the source has ended), then ``stop()``
which always runs and is idempotent. ``stats()`` reports counters such as events and drops;
drops are never hidden.

Built-in sources register through :func:`register_source`, the same seam a third party
uses; the registry refuses a second registration of a name. Building a source never
starts it: the session starts its sources as one group, in a declared order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runwatch.events import Event
from runwatch.registry import Registry


class Source(Protocol):
    """An event source: kernel sensor, proc-connector fallback, replay, ingest."""

    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def poll(self, timeout: float) -> list[Event] | None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


SourceFactory = Callable[..., Source]

#: The source registry; importing these modules registers the built-in sources.
SOURCES: Registry[SourceFactory] = Registry("source", (
    "runwatch.sensors.kernel.source", "runwatch.sensors.proc.source", "runwatch.sensors.inproc.collector",
    "runwatch.sensors.ingest.otlp", "runwatch.sensors.replay", "runwatch.policy.source",
))


def register_source(name: str, factory: SourceFactory) -> None:
    """Register a source factory under ``name``; a second registration of a name is an error."""
    SOURCES.register(name, factory)


def source_factory(name: str) -> SourceFactory:
    """Look up a registered source factory (built-ins included)."""
    return SOURCES.get(name)


def registered_sources() -> list[str]:
    """Names of all registered sources, sorted."""
    return SOURCES.names()

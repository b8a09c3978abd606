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

import importlib
from collections.abc import Callable
from typing import Protocol

from runwatch.events import Event


class Source(Protocol):
    """An event source: kernel sensor, proc-connector fallback, replay, ingest."""

    @property
    def name(self) -> str: ...

    def start(self) -> None: ...

    def poll(self, timeout: float) -> list[Event] | None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


SourceFactory = Callable[..., Source]
_REGISTRY: dict[str, SourceFactory] = {}

#: Modules whose import registers the built-in sources (loaded on first lookup).
_BUILTIN_MODULES = (
    "runwatch.sensors.kernel.source", "runwatch.sensors.proc.source", "runwatch.sensors.inproc.collector",
    "runwatch.sensors.ingest.otlp", "runwatch.sensors.replay", "runwatch.policy.source",
)
_builtins_loaded = False


def register_source(name: str, factory: SourceFactory) -> None:
    """Register a source factory under ``name``; a second registration of a name is an error."""
    if name in _REGISTRY:
        raise ValueError(f"source {name!r} is already registered")
    _REGISTRY[name] = factory


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def source_factory(name: str) -> SourceFactory:
    """Look up a registered source factory (built-ins included)."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def registered_sources() -> list[str]:
    """Names of all registered sources, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)

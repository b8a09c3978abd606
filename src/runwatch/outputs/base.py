"""The small output interfaces and the output registry.

Lifecycle (after Falco's abstract output): ``open()`` once, ``write(events)`` (an
:class:`Output`) or ``write_alerts(alerts)`` (an :class:`AlertOutput`) any number of times,
``flush()`` to push what is buffered to its destination, ``close()`` which always runs and is
idempotent. An output is driven from one thread. File outputs also offer ``reopen()`` for log
rotation (for example on SIGHUP); it may be called from a signal handler or another thread,
so implementations make it defer the real work.

Built-in outputs register through :func:`register_output`, the same seam a third party uses;
the registry refuses a second registration of a name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from runwatch.alerts.model import Alert
from runwatch.events import Event


@runtime_checkable
class Output(Protocol):
    """An event output: the store, a JSONL file, OCSF JSONL, console text, OTLP spans, ..."""

    name: str

    def open(self) -> None: ...

    def write(self, events: Sequence[Event]) -> None: ...

    def flush(self) -> object: ...  # a return value is ignored

    def close(self) -> None: ...


@runtime_checkable
class AlertOutput(Protocol):
    """An alert output: the console, a JSONL file, the store, the policy's rule actions, ..."""

    name: str

    def open(self) -> None: ...

    def write_alerts(self, alerts: Sequence[Alert]) -> None: ...

    def flush(self) -> object: ...  # a return value is ignored

    def close(self) -> None: ...


OutputFactory = Callable[..., Output | AlertOutput]
_REGISTRY: dict[str, OutputFactory] = {}

#: Modules whose import registers the built-in outputs (loaded on first lookup).
_BUILTIN_MODULES = (
    "runwatch.outputs.jsonl", "runwatch.outputs.ocsf", "runwatch.outputs.otlp", "runwatch.outputs.text",
    "runwatch.outputs.alerts", "runwatch.outputs.store",
)
_builtins_loaded = False


def register_output(name: str, factory: OutputFactory) -> None:
    """Register an output factory under ``name``; a second registration of a name is an error."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"invalid output name {name!r} (use letters, digits, '-' and '_')")
    if name in _REGISTRY:
        raise ValueError(f"output {name!r} is already registered")
    _REGISTRY[name] = factory


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def output_factory(name: str) -> OutputFactory:
    """Look up a registered output factory (built-ins included)."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown output {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def registered_outputs() -> list[str]:
    """Names of all registered outputs, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)

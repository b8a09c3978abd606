"""The small output interface and the output registry.

Lifecycle (after Falco's abstract output): ``open()`` once, ``write(events)`` any number of
times, ``reopen()`` whenever logs are rotated (for example on SIGHUP), ``close()`` which always
runs and is idempotent. An output is driven from one thread; ``reopen()`` alone may be called
from a signal handler or another thread, so implementations make it defer the real work.

Built-in outputs register through :func:`register_output`, the same seam a third party uses;
the registry refuses a second registration of a name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol

from runwatch.events import Event


class Output(Protocol):
    """An event sink: JSONL file, OCSF JSONL, console text, ..."""

    name: str

    def open(self) -> None: ...

    def write(self, events: Sequence[Event]) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


OutputFactory = Callable[..., Output]
_REGISTRY: dict[str, OutputFactory] = {}

#: Modules whose import registers the built-in outputs (loaded on first lookup).
_BUILTIN_MODULES = (
    "runwatch.outputs.jsonl", "runwatch.outputs.ocsf", "runwatch.outputs.otlp", "runwatch.outputs.text",
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

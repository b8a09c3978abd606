"""A named registry of factories (sources, outputs), with built-ins loaded on first lookup.

Built-in modules register themselves through the same public ``register`` a third party
calls; a second registration of a name is an error, so two plugins cannot silently replace
one another. Thread safety: register at import time; lookups from any thread.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Generic, TypeVar

F = TypeVar("F")


class Registry(Generic[F]):
    """Factories of one ``kind`` ("source", "output") by name; ``builtins`` are module names."""

    def __init__(self, kind: str, builtins: Sequence[str]) -> None:
        self.kind = kind
        self._builtins = tuple(builtins)
        self._loaded = False
        self._factories: dict[str, F] = {}

    def register(self, name: str, factory: F) -> None:
        """Register ``factory`` under ``name`` (letters, digits, ``-`` and ``_``); refuses duplicates."""
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"invalid {self.kind} name {name!r} (use letters, digits, '-' and '_')")
        if name in self._factories:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory

    def _load_builtins(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._builtins:
                importlib.import_module(module)

    def get(self, name: str) -> F:
        """The factory registered as ``name`` (KeyError naming the known ones)."""
        self._load_builtins()
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(sorted(self._factories))
            raise KeyError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        """Every registered name, sorted (built-ins included)."""
        self._load_builtins()
        return sorted(self._factories)

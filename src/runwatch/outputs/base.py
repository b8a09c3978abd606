"""The small output interfaces and the output registry.

Lifecycle (after Falco's abstract output): ``open()`` once, ``write(events)`` (an
:class:`Output`) or ``write_alerts(alerts)`` (an :class:`AlertOutput`) any number of times,
``flush()`` to push what is buffered to its destination, ``close()`` which always runs and is
idempotent. An output is driven from one thread. File outputs also offer ``reopen()`` for log
rotation (for example on SIGHUP); it may be called from a signal handler or another thread,
so implementations make it defer the real work.

Built-in outputs register through :func:`register_output`, the same seam a third party uses;
the registry refuses a second registration of a name. An output that delivers over the network
(:mod:`runwatch.outputs.delivery`) also offers ``output_stats()``: its sent, retried, spooled
and dropped counters, which the session puts in the run summary under ``outputs``.
``/metrics`` exports the same counters at every scrape (from the scrape's thread, so
``output_stats()`` must be safe to call from another thread): numbers as counters labelled with
the output's ``name``, mappings of numbers one sample per key, the names in an optional
``gauge_stats`` attribute (and ``queued``, ``pending``) as gauges (:mod:`runwatch.metrics.collector`,
``docs/metrics.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from runwatch.alerts.model import Alert
from runwatch.events import Event
from runwatch.registry import Registry


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

#: The output registry; importing these modules registers the built-in outputs.
OUTPUTS: Registry[OutputFactory] = Registry("output", (
    "runwatch.outputs.jsonl", "runwatch.outputs.ocsf", "runwatch.outputs.otlp", "runwatch.outputs.text",
    "runwatch.outputs.alerts", "runwatch.outputs.store", "runwatch.outputs.webhook", "runwatch.outputs.syslog",
    "runwatch.lake.output", "runwatch.transport.nats",
))


def register_output(name: str, factory: OutputFactory) -> None:
    """Register an output factory under ``name``; a second registration of a name is an error."""
    OUTPUTS.register(name, factory)


def output_factory(name: str) -> OutputFactory:
    """Look up a registered output factory (built-ins included)."""
    return OUTPUTS.get(name)


def registered_outputs() -> list[str]:
    """Names of all registered outputs, sorted."""
    return OUTPUTS.names()

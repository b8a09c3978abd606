"""One behaviour, one event: the audit hook's report and the kernel's of the same act merge.

A Python agent under the audit hook reports what it asks the OS to do (an exec, a connect, a
name look-up, a watched open), and the kernel sensor sees the same act. Rules must see it
once, or every behaviour is alerted twice. :class:`Corroboration` is a pipeline stage after
the AI-context join (which releases events in time order) that pairs each audit-hook event
with the kernel (or proc fallback) event of the same act:

==================  ============================================================================
kind                the same act when
==================  ============================================================================
``process.exec``    a spawn (``attrs["spawned"]``): a kernel exec whose parent is the caller and
                    whose executed file is the one the hook resolved; ``os.exec``: a kernel exec
                    of that file by the caller itself
``file.open``       the same process opens the same normalised path with the same intent
``net.connect``     the same process connects to the same address and port
``dns.query``       the same process asks for the same name (case and trailing dot ignored)
==================  ============================================================================

and the two are at most ``window_ms`` apart. The kernel event is the one that goes on: it is
authoritative for who did what. It takes the audit event's tool call when the join gave it
none and says ``attrs["seen_by"] = ["kernel", "audit"]``; the audit event is dropped and
counted as ``merged``. Pairs are one to one: a look-up that sends an A and an AAAA question
merges with the first. Other kinds pass through at once.

Trust. An audit event is a claim from inside the workload. Of the kinds in ``confirms`` (those
the running kernel sensor sees every time: exec and connect), one that goes on alone is marked
``attrs["unconfirmed"]``: stored with its source, but no rule matches it, so a forged datagram
cannot raise an alert (or hide one) for an act that never happened.

Timing. An audit event waits for its twin until an event more than ``window_ms`` younger has
passed, or until ``hold_ms`` after its time by the ``clock`` (epoch ns) when nothing else
arrives; then it goes on alone (``audit_only``: the kernel did not see that act, or no kernel
sensor runs). Kernel events are never held: each is remembered for ``window_ms`` of event
time, for an audit twin that comes after it. Memory is bounded by ``max_held`` audit events
and ``max_recent`` remembered kernel events; overflow releases or forgets the oldest, counted.
Not thread safe: the pipeline's consumer thread owns it.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

from runwatch.events import IDENTITY_SOURCES, SPAWNED_ATTR, UNCONFIRMED_ATTR, Event

_Key = tuple[Hashable, ...]


def _address(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def audit_keys(e: Event) -> list[_Key]:
    """Keys under which an audit-hook event looks for its kernel twin (best first)."""
    kind = e.kind
    if kind == "process.exec":
        spawned = bool(e.attrs and e.attrs.get(SPAWNED_ATTR))
        names = [n for n in (e.exe, e.exec_name) if n and n.startswith("/")]
        return [("exec", "child" if spawned else "self", e.pid, n) for n in dict.fromkeys(names)]
    key = _act_key(e)
    return [key] if key is not None else []


def kernel_keys(e: Event) -> list[_Key]:
    """Keys a kernel (or proc fallback) event can be found under by an audit twin."""
    if e.kind == "process.exec":
        names = [n for n in (e.exe, e.exec_name) if n and n.startswith("/")]
        out: list[_Key] = []
        for n in dict.fromkeys(names):
            out.append(("exec", "self", e.pid, n))
            if e.ppid:
                out.append(("exec", "child", e.ppid, n))
        return out
    key = _act_key(e)
    return [key] if key is not None else []


def _act_key(e: Event) -> _Key | None:
    kind = e.kind
    if kind == "file.open" and e.file is not None and e.file.path.startswith("/"):
        return ("file", e.pid, os.path.normpath(e.file.path), e.file.intent)
    if kind == "net.connect" and e.net is not None and e.net.dst_port is not None:
        address = _address(e.net.dst_ip)
        return ("net", e.pid, address, e.net.dst_port) if address is not None else None
    if kind == "dns.query" and e.dns is not None and e.dns.name:
        return ("dns", e.pid, e.dns.name.lower().rstrip("."))
    return None


class _Keyed:
    """Events in arrival order, each findable under its keys. Not thread safe."""

    def __init__(self) -> None:
        self._events: OrderedDict[str, tuple[Event, list[_Key]]] = OrderedDict()  # by event id, oldest first
        self._ids: dict[_Key, deque[str]] = {}  # key -> ids of the events under it, oldest first

    def __len__(self) -> int:
        return len(self._events)

    def add(self, e: Event, keys: list[_Key]) -> None:
        self._events[e.id] = (e, keys)
        for key in keys:
            self._ids.setdefault(key, deque()).append(e.id)

    def oldest(self) -> Event | None:
        return next(iter(self._events.values()))[0] if self._events else None

    def pop(self, eid: str) -> Event:
        e, keys = self._events.pop(eid)
        for key in keys:
            ids = self._ids[key]
            ids.remove(eid)
            if not ids:
                del self._ids[key]
        return e

    def take(self, keys: list[_Key], near: int, window_ns: int) -> Event | None:
        """Remove and return the first event under one of ``keys`` (best first) at most
        ``window_ns`` from time ``near``."""
        for key in keys:
            for eid in self._ids.get(key, ()):
                if abs(self._events[eid][0].time - near) <= window_ns:
                    return self.pop(eid)
        return None

    def clear(self) -> list[Event]:
        out = [e for e, _ in self._events.values()]
        self._events.clear()
        self._ids.clear()
        return out


class Corroboration:
    """Merges audit-hook events into the kernel events of the same act (see the module docstring)."""

    def __init__(self, window_ms: float = 1000.0, hold_ms: float = 1500.0, *, max_held: int = 65536,
                 max_recent: int = 65536, clock: Callable[[], int] = time.time_ns,
                 confirms: frozenset[str] = frozenset()) -> None:
        self.window_ns = int(window_ms * 1e6)
        self.confirms = confirms
        self.hold_ns = int(max(hold_ms, window_ms) * 1e6)
        self.max_held, self.max_recent = max_held, max_recent
        self.clock = clock
        self._held = _Keyed()  # audit events waiting for their kernel twin
        self._recent = _Keyed()  # kernel events of the last window, for a twin that comes after
        self._watermark = 0
        self.counters = dict.fromkeys(("merged", "audit_only", "unconfirmed", "forced_releases", "forgotten"), 0)

    def __call__(self, batch: list[Event]) -> list[Event]:
        out: list[Event] = []
        for e in batch:
            if e.time > self._watermark:
                self._watermark = e.time
            if e.source == "audit":
                keys = audit_keys(e)
                if keys:
                    kernel = self._recent.take(keys, e.time, self.window_ns)
                    if kernel is not None:
                        self._merge(kernel, e)  # the kernel event is already on its way
                    else:
                        self._hold(e, keys, out)
                    continue
            elif e.source in IDENTITY_SOURCES:
                keys = kernel_keys(e)
                if keys:
                    audit = self._held.take(keys, e.time, self.window_ns)
                    if audit is not None:
                        self._merge(e, audit)
                    self._remember(e, keys)
            out.append(e)
        self._release(out)
        return out

    def flush(self) -> list[Event]:
        """Release every held audit event now (end of run)."""
        out = self._held.clear()
        for e in out:
            self._alone(e)
        return out

    def _alone(self, e: Event) -> Event:
        """``e`` goes on without a kernel twin: unconfirmed if the kernel would have seen it."""
        self.counters["audit_only"] += 1
        if e.kind in self.confirms:
            attrs = e.attrs if e.attrs is not None else {}
            attrs[UNCONFIRMED_ATTR] = True
            e.attrs = attrs
            self.counters["unconfirmed"] += 1
        return e

    def stats(self) -> dict[str, int]:
        """Counters plus the sizes of the bounded tables."""
        return {**self.counters, "held": len(self._held), "recent": len(self._recent)}

    def _merge(self, kernel: Event, audit: Event) -> None:
        """``kernel`` goes on for both: it takes the audit event's tool call if it has none."""
        if kernel.tool_call is None and audit.tool_call is not None and not (kernel.ai and kernel.ai.candidates):
            kernel.tool_call = audit.tool_call
        attrs = kernel.attrs if kernel.attrs is not None else {}
        attrs["seen_by"] = [kernel.source, "audit"]
        attrs["audit_id"] = audit.id
        kernel.attrs = attrs
        self.counters["merged"] += 1

    def _hold(self, e: Event, keys: list[_Key], out: list[Event]) -> None:
        self._held.add(e, keys)
        while len(self._held) > self.max_held:
            oldest = self._held.oldest()
            assert oldest is not None
            out.append(self._held.pop(oldest.id))  # released early, not judged: its twin may still come
            self.counters["forced_releases"] += 1

    def _remember(self, e: Event, keys: list[_Key]) -> None:
        self._recent.add(e, keys)
        while len(self._recent) > self.max_recent:
            oldest = self._recent.oldest()
            assert oldest is not None
            self._recent.pop(oldest.id)
            self.counters["forgotten"] += 1

    def _release(self, out: list[Event]) -> None:
        """Send on audit events whose twin can no longer come; forget old kernel events."""
        now = self.clock()
        while (e := self._held.oldest()) is not None:
            if e.time + self.window_ns >= self._watermark and e.time + self.hold_ns > now:
                break
            out.append(self._alone(self._held.pop(e.id)))
        horizon = self._watermark - self.window_ns
        while (e := self._recent.oldest()) is not None and e.time < horizon:
            self._recent.pop(e.id)

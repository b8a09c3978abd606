"""The session's sources, built unstarted from the source registry as one group.

:func:`build_sources` declares the group in start order: the system source (the eBPF sensor,
else the proc connector: :class:`~runwatch.sensors.fallback.FirstAvailable`), then the
optional agent-SDK collector and OTLP receiver (one that cannot bind is a notice, not an
error). Further members (the policy decisions) are added before start. Starting and stopping
is the group's job (:class:`~runwatch.sensors.multi.MultiSource`): in order, and in reverse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from runwatch.sensors.base import Source, source_factory
from runwatch.sensors.fallback import Candidate, FirstAvailable, NoSourceError
from runwatch.sensors.multi import MultiSource

__all__ = ["NoSourceError", "Sources", "build_sources"]

PROC_LOST_NOTICE = "fallback source (proc connector + /proc) cannot see: "


@dataclass
class Sources:
    """The unstarted source group and what the user should be told about it once started."""

    group: MultiSource
    system: FirstAvailable
    sdk_path: str | None = None  # where the agent-SDK collector is to listen
    otlp: Source | None = None
    otlp_addr: tuple[str, int] | None = None
    extra_notices: list[str] = field(default_factory=list)

    def prepare(self) -> None:
        """Begin the system source's load in the background (see KernelSource.prepare)."""
        self.system.prepare()

    def start(self) -> None:
        """Start every member in declared order (NoSourceError if no system source runs)."""
        self.group.start()

    def stop(self) -> None:
        """Stop every started member, in reverse; then the system source even if it never
        started (a prepared load is released)."""
        try:
            self.group.stop()
        finally:
            self.system.stop()

    def _running(self, name: str) -> bool:
        return any(s.name == name for s in self.group.running)

    @property
    def sdk_socket(self) -> str | None:
        """Where the agent-SDK collector listens, if it runs."""
        return self.sdk_path if self.sdk_path and self._running("sdk") else None

    @property
    def otlp_endpoint(self) -> str | None:
        """Where the OTLP/HTTP receiver listens, if it runs."""
        if self.otlp is None or self.otlp_addr is None or not self._running("otlp"):
            return None
        endpoint = getattr(self.otlp, "endpoint", None)
        return endpoint if isinstance(endpoint, str) else f"http://{self.otlp_addr[0]}:{self.otlp_addr[1]}"

    @property
    def report(self) -> object | None:
        """The kernel sensor's load report (programs active and refused), if it runs."""
        return getattr(self.system.chosen, "report", None)

    @property
    def active(self) -> dict[str, str]:
        """Active hooks/programs of the kernel sensor."""
        return dict(getattr(self.report, "active", {}) or {})

    @property
    def refused(self) -> dict[str, str]:
        """Hooks/programs the kernel refused, with the reason."""
        return dict(getattr(self.report, "refused", {}) or {})

    @property
    def notices(self) -> list[str]:
        """One line each: fallbacks taken, programs refused, optional members not started."""
        out: list[str] = []
        chosen = self.system.chosen
        if chosen is not None and chosen.name == "proc":
            if self.system.reasons:
                out.append(self.system.reasons[0] + " -> falling back to the proc connector")
            out.append(PROC_LOST_NOTICE + "; ".join(getattr(chosen, "LOST", ())))
        refused = self.refused
        if refused:
            kinds_lost = getattr(self.report, "kinds_lost", None)
            lost = sorted(kinds_lost()) if callable(kinds_lost) else []
            out.append(f"{len(refused)} sensor program(s) refused by the kernel ({', '.join(sorted(refused))}); "
                       f"still active: {len(self.active)}; event kinds lost: {', '.join(lost) or 'none'} "
                       "(see `runwatch doctor`)")
        return out + self.group.notices + self.extra_notices


def _system(prefer: str, track_self: bool, ring_bytes: int, detach_wait: bool) -> FirstAvailable:
    candidates: list[Candidate] = []
    if prefer in ("auto", "kernel"):
        skip = None
        if os.geteuid() != 0 and prefer == "auto":
            skip = "not running as root (needs CAP_BPF, CAP_PERFMON)"
        kernel = source_factory("kernel")(track_pids=[] if track_self else None, ring_bytes=ring_bytes,
                                          detach_wait=detach_wait)
        candidates.append(Candidate("eBPF sensor", kernel, skip))
    if prefer in ("auto", "proc"):
        proc = source_factory("proc")(root_pid=os.getpid() if track_self else None)
        candidates.append(Candidate("proc connector", proc))
    if not candidates:
        raise ValueError(f"unknown source preference {prefer!r} (auto, kernel or proc)")
    return FirstAvailable(candidates)


def build_sources(prefer: str = "auto", *, track_self: bool = False, ring_bytes: int = 1 << 24,
                  detach_wait: bool = True, sdk_socket: str | None = None, otlp_listen: tuple[str, int] | None = None,
                  otlp_token: str | None = None) -> Sources:
    """Build (not start) the session's source group.

    ``prefer`` is auto, kernel or proc. ``track_self``: report only processes this process
    starts from now on (runwatch run). ``detach_wait``: stopping returns once the kernel
    sensor is detached (False: for a process about to exit). ``sdk_socket``: also collect agent-SDK events on this
    unix socket; ``otlp_listen``: also receive OTLP/HTTP GenAI spans on (host, port) (host
    ``unix:PATH``: on that unix socket), requiring
    bearer token ``otlp_token`` when given (ValueError for a non-loopback host without one).
    """
    system = _system(prefer, track_self, ring_bytes, detach_wait)
    group = MultiSource()
    group.add(system)
    sources = Sources(group, system)
    if sdk_socket:
        # One clock for every source: the kernel sensor's monotonic-to-epoch offset.
        offset = getattr(system.candidates[0].source, "clock_offset", None)
        collector = source_factory("sdk")(sdk_socket, clock_offset=offset if isinstance(offset, int) else None)
        group.add(collector, optional="agent SDK collector")
        sources.sdk_path = sdk_socket
    if otlp_listen is not None:
        receiver = source_factory("otlp")(*otlp_listen, token=otlp_token)
        host, port = otlp_listen
        group.add(receiver, optional=f"OTLP receiver on {host if host.startswith('unix:') else f'{host}:{port}'}")
        sources.otlp, sources.otlp_addr = receiver, otlp_listen
    return sources

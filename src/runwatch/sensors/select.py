"""Choose the best event source this host allows: eBPF first, the proc connector if not."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from runwatch.sensors.base import Source


class NoSourceError(RuntimeError):
    """Neither the eBPF sensor nor the fallback can run here."""


@dataclass
class Opened:
    """A started source and what the user should be told about it."""

    source: Source
    notices: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # hook/program -> reason
    active: dict[str, str] = field(default_factory=dict)
    sdk_socket: str | None = None  # where the agent-SDK collector listens, if it runs
    otlp_endpoint: str | None = None  # where the OTLP/HTTP receiver listens, if it runs


def _kernel(track: bool, ring_bytes: int) -> Opened:
    from runwatch.sensors.kernel.source import KernelSource

    src = KernelSource(track_pids=[] if track else None, ring_bytes=ring_bytes)
    src.start()
    opened = Opened(src, refused=dict(src.report.refused), active=dict(src.report.active))
    if src.report.refused:
        lost = sorted(src.report.kinds_lost())
        opened.notices.append(
            f"{len(src.report.refused)} sensor program(s) refused by the kernel "
            f"({', '.join(sorted(src.report.refused))}); still active: {len(src.report.active)}; "
            f"event kinds lost: {', '.join(lost) or 'none'} (see `runwatch doctor`)")
    return opened


def _proc(root_pid: int | None) -> Opened:
    from runwatch.sensors.proc.source import ProcConnectorSource

    src = ProcConnectorSource(root_pid=root_pid)
    src.start()
    return Opened(src, notices=["fallback source (proc connector + /proc) cannot see: "
                                + "; ".join(ProcConnectorSource.LOST)])


def open_source(prefer: str = "auto", *, track_self: bool = False, ring_bytes: int = 1 << 24,
                sdk_socket: str | None = None, otlp_listen: tuple[str, int] | None = None) -> Opened:
    """Start the sources: the best system source, plus the agent-SDK collector.

    ``prefer`` is auto, kernel or proc. ``track_self``: report only processes this process
    starts from now on (runwatch run). ``sdk_socket``: also collect agent-SDK events on this
    unix socket (a collector that cannot bind is a notice, not an error).
    Raises NoSourceError with every reason if no system source can start.
    """
    opened = _open_system(prefer, track_self, ring_bytes)
    if sdk_socket:
        _add_sdk(opened, sdk_socket)
    if otlp_listen is not None:
        _add_otlp(opened, *otlp_listen)
    return opened


def _merge(opened: Opened, extra: Source) -> None:
    from runwatch.sensors.multi import MultiSource

    if isinstance(opened.source, MultiSource):
        opened.source = MultiSource([*opened.source.sources, extra])
    else:
        opened.source = MultiSource([opened.source, extra])


def _add_otlp(opened: Opened, host: str, port: int) -> None:
    from runwatch.sensors.ingest.otlp import OtlpReceiver

    receiver = OtlpReceiver(host, port)
    try:
        receiver.start()
    except (OSError, RuntimeError) as exc:
        opened.notices.append(f"OTLP receiver not started on {host}:{port}: {exc}")
        return
    _merge(opened, receiver)
    opened.otlp_endpoint = f"http://{host}:{receiver.port}"


def _add_sdk(opened: Opened, path: str) -> None:
    from runwatch.sensors.inproc.collector import SdkCollector

    offset = getattr(opened.source, "clock_offset", None)
    collector = SdkCollector(path, clock_offset=offset if isinstance(offset, int) else None)
    try:
        collector.start()
    except (OSError, RuntimeError) as exc:
        opened.notices.append(f"agent SDK collector not started on {path}: {exc}")
        return
    _merge(opened, collector)
    opened.sdk_socket = path


def _open_system(prefer: str, track_self: bool, ring_bytes: int) -> Opened:
    reasons: list[str] = []
    if prefer in ("auto", "kernel"):
        if os.geteuid() != 0 and prefer == "auto":
            reasons.append("eBPF sensor: not running as root (needs CAP_BPF, CAP_PERFMON)")
        else:
            try:
                return _kernel(track_self, ring_bytes)
            except (OSError, RuntimeError) as exc:
                reasons.append(f"eBPF sensor: {exc}")
        if prefer == "kernel":
            raise NoSourceError("; ".join(reasons))
    try:
        opened = _proc(os.getpid() if track_self else None)
    except (OSError, RuntimeError) as exc:
        reasons.append(f"proc connector: {exc}")
        raise NoSourceError("no event source can run here: " + "; ".join(reasons)) from None
    if reasons:
        opened.notices.insert(0, reasons[0] + " -> falling back to the proc connector")
    return opened

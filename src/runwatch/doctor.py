"""What this host allows: which sources and hooks are active, and why others are not.

``diagnose()`` does the real thing (loads the sensor, subscribes to the proc connector)
rather than guessing from versions, then releases everything.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runwatch.store.runs import RunRecord


@dataclass
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str


@dataclass
class Diagnosis:
    """Everything ``runwatch doctor`` reports."""

    checks: list[Check] = field(default_factory=list)
    hooks_active: dict[str, str] = field(default_factory=dict)
    hooks_refused: dict[str, str] = field(default_factory=dict)
    kinds_lost: list[str] = field(default_factory=list)
    source: str = "none"
    runs: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> None:
        """Record one check."""
        self.checks.append(Check(name, ok, detail))


def _libbpf_version() -> str:
    try:
        lib = ctypes.CDLL("libbpf.so.1")
        lib.libbpf_version_string.restype = ctypes.c_char_p
        return str(lib.libbpf_version_string().decode())
    except (OSError, AttributeError) as exc:
        raise OSError(f"libbpf.so.1 cannot be loaded: {exc}") from None


def _tool_version(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else ""


def _host(d: Diagnosis) -> None:
    d.add("kernel", True, f"{platform.release()} ({platform.machine()})")
    d.add("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0 else
          f"euid {os.geteuid()}: the eBPF sensor needs root; the proc connector fallback too")
    btf = Path("/sys/kernel/btf/vmlinux")
    d.add("kernel BTF", btf.exists(), str(btf) if btf.exists() else "missing: CO-RE programs cannot load")
    try:
        d.add("libbpf", True, _libbpf_version())
    except OSError as exc:
        d.add("libbpf", False, str(exc))
    from runwatch.sensors.kernel.loader import TRACEFS, object_path

    obj = object_path()
    d.add("sensor object", obj.exists(), str(obj) if obj.exists() else f"{obj} missing: run scripts/install.sh")
    d.add("tracefs", (TRACEFS / "events").is_dir(), f"{TRACEFS} mounted" if (TRACEFS / "events").is_dir()
          else f"{TRACEFS} not mounted (the sensor mounts it at start)")
    from runwatch.host import cgroup_v2_if_any
    from runwatch.host.mounts import cgroup_v1_mounted

    found = cgroup_v2_if_any()
    v2 = str(found.root) if found is not None else None
    hybrid = cgroup_v1_mounted()
    d.add("cgroup v2", v2 is not None, f"{v2} ({'hybrid v1+v2' if hybrid else 'unified'})" if v2 else
          "no cgroup v2 hierarchy: container attribution unavailable")
    runc = _tool_version(["runc", "--version"])
    d.add("runc", runc is not None, runc or "not installed (containers for tests and the demo need it)")


def _sensor(d: Diagnosis) -> None:
    from runwatch.sensors.kernel.source import KernelSource

    if os.geteuid() != 0:
        d.add("eBPF sensor", False, "not root: not attempted")
        return
    src = KernelSource(track_pids=[], ring_bytes=1 << 20)
    try:
        src.start()
    except (OSError, RuntimeError) as exc:
        d.add("eBPF sensor", False, str(exc))
        return
    try:
        d.hooks_active = dict(src.report.active)
        d.hooks_refused = dict(src.report.refused)
        d.kinds_lost = sorted(src.report.kinds_lost())
        d.source = "kernel"
        d.add("eBPF sensor", True, f"{len(d.hooks_active)} programs active, {len(d.hooks_refused)} refused")
    finally:
        src.stop()


def _fallback(d: Diagnosis) -> None:
    from runwatch.sensors.proc.source import ProcConnectorSource

    src = ProcConnectorSource(root_pid=os.getpid())
    try:
        src.start()
    except (OSError, RuntimeError) as exc:
        d.add("proc connector (fallback)", False, str(exc))
        return
    src.stop()
    d.add("proc connector (fallback)", True, "available if the eBPF sensor is refused")
    if d.source == "none":
        d.source = "proc"


def _run_state(r: RunRecord) -> str:
    if r.crashed:
        return "crashed"
    return "running" if r.ended is None else "ended"


def _runs(d: Diagnosis, db: str | None) -> None:
    if not db or not Path(db).exists():
        return
    from runwatch.store.sqlite import StoreError, mark_crashed_runs, query_runs

    marked = mark_crashed_runs(db)  # runs whose runwatch died without closing them
    try:
        runs = query_runs(db)
    except StoreError as exc:
        d.add("event store", False, str(exc))
        return
    for r in runs[-5:]:
        store = r.stats.get("store") or {}
        d.runs.append({"command": r.command, "started": r.started, "exit_code": r.exit_code,
                       "state": _run_state(r), "events": r.stats.get("events"), "alerts": r.stats.get("alerts"),
                       "drops": r.stats.get("drops"), "lost": store.get("lost", 0),
                       "source": r.stats.get("source")})
    dropped = sum(int(r.stats.get("drops") or 0) for r in runs)
    d.add("ring buffer drops", dropped == 0, f"{dropped} events dropped over {len(runs)} recorded runs in {db}")
    lost = sum(int((r.stats.get("store") or {}).get("lost") or 0) for r in runs)
    d.add("store losses", lost == 0, f"{lost} events the store could not keep over {len(runs)} recorded runs")
    crashed = [r for r in runs if r.crashed]
    d.add("crashed runs", not crashed, f"{len(crashed)} of {len(runs)} recorded runs ended without closing"
          + (f" ({len(marked)} found now)" if marked else ""))


def diagnose(db: str | None = None) -> Diagnosis:
    """Run every check. Needs root for the sensor checks; never leaves anything loaded."""
    d = Diagnosis()
    _host(d)
    _sensor(d)
    _fallback(d)
    _runs(d, db)
    return d

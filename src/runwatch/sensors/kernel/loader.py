"""Load and attach the kernel sensor's BPF programs, each one independently.

Programs are declared once, as data, in :data:`PROGRAMS`. Loading tries the whole object
first; if the kernel refuses it, each program is probed alone, the refused ones are turned
off with their reason, and the rest load. Attach failures are handled the same way.
:class:`LoadReport` says which hooks are active and why the others are not.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runwatch import eventkinds
from runwatch.sensors.kernel import layout as L
from runwatch.sensors.kernel.libbpf import LibbpfError, LogCapture, check_ptr, lib

TRACEFS = Path("/sys/kernel/tracing")


@dataclass(frozen=True)
class ProgramSpec:
    """One BPF program: its function name, the hook it attaches to, the events it yields."""

    name: str
    hook: str
    provides: tuple[str, ...]


PROGRAMS: tuple[ProgramSpec, ...] = tuple(
    ProgramSpec(p.program, p.hook, (k.name,)) for k in eventkinds.kernel_kinds() for p in k.programs)


def object_path() -> Path:
    """Where the built BPF object is: $RUNWATCH_BPF_OBJ, else the package's build dir."""
    env = os.environ.get("RUNWATCH_BPF_OBJ")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "bpf" / "build" / "runwatch.bpf.o"


@dataclass
class LoadReport:
    """Which programs are active, and the reason for each one that is not."""

    active: dict[str, str] = field(default_factory=dict)  # name -> hook
    refused: dict[str, str] = field(default_factory=dict)  # name -> reason
    notices: list[str] = field(default_factory=list)

    def kinds_active(self) -> set[str]:
        """Event kinds with at least one active program."""
        by_name = {p.name: p for p in PROGRAMS}
        return {k for n in self.active for k in by_name[n].provides}

    def kinds_lost(self) -> set[str]:
        """Event kinds no active program provides."""
        return {k for p in PROGRAMS for k in p.provides} - self.kinds_active()


def ensure_tracefs() -> str | None:
    """Mount tracefs if needed (tracepoint/ programs need it). Returns a problem or None."""
    if (TRACEFS / "events").is_dir():
        return None
    try:
        subprocess.run(["mount", "-t", "tracefs", "tracefs", str(TRACEFS)], check=True,
                       capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        return f"tracefs is not mounted at {TRACEFS} and mounting it failed: {detail.strip()}"
    return None if (TRACEFS / "events").is_dir() else f"tracefs mounted but {TRACEFS}/events is missing"


class BpfObject:
    """An opened (and later loaded) libbpf object. Close it exactly once."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"BPF object {path} not found: run scripts/install.sh to build it")
        self.ptr = check_ptr(lib().bpf_object__open_file(str(path).encode(), None), f"open {path}")
        self.programs: dict[str, int] = {}
        p = None
        while True:
            p = lib().bpf_object__next_program(self.ptr, p)
            if not p:
                break
            self.programs[lib().bpf_program__name(p).decode()] = p

    def map(self, name: str) -> int:
        """The libbpf map pointer of a map by name."""
        return check_ptr(lib().bpf_object__find_map_by_name(self.ptr, name.encode()), f"map {name}")

    def map_fd(self, name: str) -> int:
        """The file descriptor of a map (after load)."""
        fd: int = lib().bpf_map__fd(self.map(name))
        if fd < 0:
            raise LibbpfError(-fd, f"map {name} has no fd")
        return fd

    def close(self) -> None:
        """Free the object (and its maps and programs)."""
        if self.ptr:
            lib().bpf_object__close(self.ptr)
            self.ptr = 0


@dataclass
class LoadOptions:
    """What to set before load: the read-only config and the ring buffer size (bytes, power of 2)."""

    filter_tracked: bool = False
    ring_bytes: int = 1 << 24
    wakeup_bytes: int = 1 << 20
    disabled: tuple[str, ...] = ()


def _prepare(obj: BpfObject, opts: LoadOptions, enabled: set[str]) -> None:
    cfg = L.RwConfig(int(opts.filter_tracked), os.getpid(), min(opts.wakeup_bytes, opts.ring_bytes // 2), 0)
    rodata = obj.map(".rodata")
    rc = lib().bpf_map__set_initial_value(rodata, ctypes.byref(cfg), ctypes.sizeof(cfg))
    if rc:
        raise LibbpfError(-rc, "setting the sensor configuration (.rodata) failed")
    lib().bpf_map__set_max_entries(obj.map("events"), opts.ring_bytes)
    for name, prog in obj.programs.items():
        lib().bpf_program__set_autoload(prog, name in enabled)


def _try_load(path: Path, opts: LoadOptions, enabled: set[str]) -> tuple[BpfObject | None, str]:
    obj = BpfObject(path)
    _prepare(obj, opts, enabled)
    with LogCapture() as log:
        rc = lib().bpf_object__load(obj.ptr)
    if rc == 0:
        return obj, ""
    obj.close()
    return None, f"{os.strerror(-rc) if rc < 0 else rc}: {log.tail(3)}"


def load(opts: LoadOptions | None = None, path: Path | None = None) -> tuple[BpfObject, list[int], LoadReport]:
    """Load and attach every program the kernel accepts.

    Returns the loaded object, the attach links (destroy them, then close the object) and
    the report. Raises LibbpfError only if no program at all can be loaded.
    """
    opts = opts or LoadOptions()
    path = path or object_path()
    report = LoadReport()
    enabled = {p.name for p in PROGRAMS if p.name not in opts.disabled}
    for name in opts.disabled:
        report.refused[name] = "disabled by configuration"
    problem = ensure_tracefs()
    if problem:
        for p in PROGRAMS:
            if p.hook.startswith("tracepoint/") and p.name in enabled:
                enabled.discard(p.name)
                report.refused[p.name] = problem
    obj, err = _try_load(path, opts, enabled)
    if obj is None:
        # Find the culprits one by one; keep everything else.
        for name in sorted(enabled):
            single, why = _try_load(path, opts, {name})
            if single is None:
                report.refused[name] = f"kernel refused to load it ({why})"
            else:
                single.close()
        enabled -= set(report.refused)
        if not enabled:
            raise LibbpfError(1, f"the kernel refused every sensor program (first: {err})")
        obj, err = _try_load(path, opts, enabled)
        if obj is None:
            raise LibbpfError(1, f"loading the accepted programs together failed: {err}")
    links: list[int] = []
    specs = {p.name: p for p in PROGRAMS}
    for name in sorted(enabled):
        with LogCapture() as log:
            link = lib().bpf_program__attach(obj.programs[name])
        if link:
            links.append(link)
            report.active[name] = specs[name].hook
        else:
            err_no = ctypes.get_errno()
            report.refused[name] = f"attach to {specs[name].hook} failed: {os.strerror(err_no)} {log.tail(1)}".strip()
    if not links:
        obj.close()
        raise LibbpfError(1, "no sensor program could be attached: " + "; ".join(report.refused.values()))
    return obj, links, report


def unload(obj: BpfObject, links: list[int]) -> None:
    """Detach every link, then free the object. Safe to call once per load()."""
    for link in links:
        lib().bpf_link__destroy(link)
    links.clear()
    obj.close()

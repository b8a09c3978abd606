"""Load and attach the kernel sensor's BPF programs, each one independently.

Programs are declared once, as data, in :data:`PROGRAMS`; :data:`SPEC` declares the whole
object (programs, maps, shared structs) for :mod:`runwatch.bpf`. Loading tries the whole
object first; if the kernel refuses it, each program is probed alone, the refused ones are
turned off with their reason, and the rest load. Attach failures are handled the same way.
:class:`LoadReport` says which hooks are active and why the others are not.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from runwatch import eventkinds
from runwatch.bpf.libbpf import LibbpfError, lib
from runwatch.bpf.object import BpfObject
from runwatch.bpf.spec import MapDecl, ObjectSpec, ProgramDecl
from runwatch.sensors.kernel import layout as L

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


#: libbpf program type and expected attach type of each section prefix the sensor uses.
_SECTION_TYPES: dict[str, tuple[str, str | None]] = {
    "tp_btf": ("tracing", "trace_raw_tp"),
    "tracepoint": ("tracepoint", None),
}

RING_BYTES = 1 << 24
"""The compiled size of the ``events`` ring buffer (the loader may resize it)."""

SPEC = ObjectSpec(
    name="runwatch.bpf.o",
    locate=object_path,
    header="runwatch.h",
    struct_prefix="rw_",
    programs=tuple(ProgramDecl(p.name, p.hook, *_SECTION_TYPES[p.hook.split("/", 1)[0]]) for p in PROGRAMS),
    maps=(
        MapDecl("events", "ringbuf", 0, 0, RING_BYTES),
        MapDecl("drops", "percpu_array", 4, 8, L.MAX_KIND),
        MapDecl("tracked", "hash", 4, 1, 65536),
        MapDecl("watched", "lpm_trie", 4 + L.PATH_LEN, 4, 1024),
        MapDecl("scratch", "percpu_array", 4, 4 + 2 * L.PATH_LEN, 2),
        MapDecl("exe_buf", "percpu_array", 4, 2 * L.EXE_LEN, 1),
        MapDecl("pending", "lru_hash", 4, 36, 8192),
        MapDecl("dns_socks", "lru_hash", 8, 24, 4096),
        MapDecl("watch_names", "hash", L.NAME_KEY, 4, 256),
        MapDecl("name_first", "array", 4, ctypes.sizeof(L.RwNameFirst), 1),
        MapDecl("watch_inodes", "hash", 16, 4, 4096),
        MapDecl("watch_ino_bits", "array", 4, ctypes.sizeof(L.RwInoBits), 1),
        MapDecl("canon", "percpu_array", 4, 4 * L.PATH_LEN, 1),
        MapDecl("walks", "percpu_array", 4, 5 * 8 + 8 * 4 + L.NAME_KEY + 16, 1),  # struct canon_walk
        MapDecl("dir_walks", "percpu_array", 4, (3 + L.CWD_DEPTH) * 8 + 4 * 4, 1),  # struct dir_walk
        MapDecl("exec_names", "lru_hash", 4, 8, 4096),
        MapDecl("sent_to", "lru_hash", 32, 1, 16384),
        MapDecl("sends", "lru_hash", 4, 36, 8192),
        MapDecl("dns_rx", "lru_hash", 8, 8, 4096),
        MapDecl("dns_stream", "lru_hash", 8, 1, 4096),
        MapDecl("env_allow", "hash", L.ENV_NAME, 1, 64),
        MapDecl("dns_reads", "lru_hash", 4, 16, 4096),
        MapDecl(".rodata", "array", 4, ctypes.sizeof(L.RwConfig), 1),
        MapDecl(".bss", "array", 4, 14 * 8, 1),  # the fourteen record- and key-pointer anchors that keep records in BTF
    ),
    structs=L.RECORDS,
)


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


@dataclass
class LoadOptions:
    """What to set before load: the read-only config and the ring buffer size (bytes, power of 2)."""

    filter_tracked: bool = False
    ring_bytes: int = RING_BYTES
    wakeup_bytes: int = 1 << 20
    disabled: tuple[str, ...] = ()


def _prepare(obj: BpfObject, opts: LoadOptions, enabled: set[str]) -> None:
    cfg = L.RwConfig(int(opts.filter_tracked), os.getpid(), min(opts.wakeup_bytes, opts.ring_bytes // 2), 0)
    rodata = obj.map(".rodata")
    rc = lib().bpf_map__set_initial_value(rodata, ctypes.byref(cfg), ctypes.sizeof(cfg))
    if rc:
        raise LibbpfError(-rc, "setting the sensor configuration (.rodata) failed")
    lib().bpf_map__set_max_entries(obj.map("events"), opts.ring_bytes)
    obj.set_autoload(enabled)


def _load_once(path: Path, opts: LoadOptions, enabled: set[str], quiet: bool) -> tuple[BpfObject | None, str]:
    obj = BpfObject(path)
    try:
        _prepare(obj, opts, enabled)
        obj.load(quiet=quiet)
    except LibbpfError as exc:
        obj.close()
        return None, exc.strerror or str(exc)
    return obj, ""


def _try_load(path: Path, opts: LoadOptions, enabled: set[str]) -> tuple[BpfObject | None, str]:
    """Load quietly (no log callbacks: see BpfObject.load); a refusal is loaded again with the
    log, for its reason."""
    obj, err = _load_once(path, opts, enabled, quiet=True)
    if obj is None:
        obj, err = _load_once(path, opts, enabled, quiet=False)
    return obj, err


def load_programs(opts: LoadOptions | None = None, path: Path | None = None) -> tuple[BpfObject, set[str], LoadReport]:
    """Load (verify) every program the kernel accepts, attaching none.

    Returns the object, the names loaded and the report so far (refusals). Mostly kernel
    time, with the GIL released: another thread may go on meanwhile. Raises LibbpfError
    only if no program at all can be loaded.
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
    return obj, enabled, report


_Loaded = tuple[BpfObject, set[str], LoadReport]
_preloaded: list[tuple[LoadOptions, Future[_Loaded]]] = []


def preload(opts: LoadOptions) -> None:
    """Begin :func:`load_programs` with ``opts`` on a thread now, for a source built later
    (:func:`take_preloaded`); what nobody takes is freed at exit."""
    if _preloaded:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpf-preload")
    _preloaded.append((opts, pool.submit(load_programs, opts)))
    pool.shutdown(wait=False)
    atexit.register(_discard_preloaded)


def take_preloaded(opts: LoadOptions) -> Future[_Loaded] | None:
    """The load :func:`preload` began, if it was for the same options (else it is freed)."""
    if not _preloaded:
        return None
    given, loading = _preloaded.pop()
    if given == opts:
        return loading
    loading.add_done_callback(_close_loaded)
    return None


def _close_loaded(loading: Future[_Loaded]) -> None:
    with contextlib.suppress(Exception):  # a failed load took nothing
        loading.result()[0].close()


def _discard_preloaded() -> None:
    while _preloaded:
        _close_loaded(_preloaded.pop()[1])


def attach_programs(obj: BpfObject, enabled: set[str], report: LoadReport) -> list[int]:
    """Attach the loaded programs; returns the links (the object owns them) and fills the report.

    Raises LibbpfError (and closes the object) if none attaches.
    """
    links: list[int] = []
    specs = {p.name: p for p in PROGRAMS}
    for name in sorted(enabled):
        try:
            links.append(obj.attach(name))
        except LibbpfError as exc:
            report.refused[name] = f"attach to {specs[name].hook} failed: {exc.strerror}"
        else:
            report.active[name] = specs[name].hook
    if not links:
        obj.close()
        raise LibbpfError(1, "no sensor program could be attached: " + "; ".join(report.refused.values()))
    return links


def load(opts: LoadOptions | None = None, path: Path | None = None) -> tuple[BpfObject, list[int], LoadReport]:
    """Load and attach every program the kernel accepts (:func:`load_programs`, then
    :func:`attach_programs`).

    Returns the loaded object, the attach links (the object owns them: :func:`unload` or
    ``BpfObject.close`` destroys them) and the report. Raises LibbpfError only if no
    program at all can be loaded or attached.
    """
    obj, enabled, report = load_programs(opts, path)
    return obj, attach_programs(obj, enabled, report), report


def unload(obj: BpfObject, links: list[int], wait: bool = True) -> None:
    """Detach every link, then free the object. Safe to call once per load().

    ``wait``: return once every program is detached (concurrently, see
    :func:`runwatch.bpf.object.destroy_links`); else hand the links to a child that detaches
    them after this returns (:func:`runwatch.bpf.object.hand_off_links`), for a process
    that is about to exit.
    """
    if wait:
        obj.destroy(links)
    else:
        obj.hand_off(links)
    links.clear()
    obj.close()

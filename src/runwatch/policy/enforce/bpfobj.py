"""The loaded enforcement BPF object (``bpf/enforce.bpf.o``): maps, links and decision records.

One :class:`EnforceObject` per process. It loads the object, attaches the host-wide exec
program (``tp_btf/sched_process_exec``, the kill hook) and attaches the egress programs
(four sock_addr hooks and ``cgroup/sock_create``) to a cgroup on request; the first such
request (or the first exec policy) also attaches the host-wide syscall hooks
(``tp_btf/sys_enter``: AF_PACKET sockets and executable mappings;
``tp_btf/io_uring_submit_req``), which do nothing outside policed cgroups, and
``tp_btf/cgroup_mkdir`` once new cgroups are to be held (:meth:`EnforceObject.hold_scope_add`).
Every attachment is a BPF *link* held by this process's file descriptors, so the kernel
detaches it when the process exits, even on SIGKILL, unless :meth:`EnforceObject.guard`
pinned it (a ``fail: closed`` policy: see :mod:`runwatch.bpf.pins` and the heartbeat).

Thread safety: map updates and attach/detach are serialised by an internal lock; the
decision ring is drained by one thread only (:meth:`EnforceObject.drain`).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

from runwatch.bpf.libbpf import LibbpfError, lib, possible_cpus
from runwatch.bpf.object import BpfObject
from runwatch.bpf.pins import PinDir, cgroup_pin_name
from runwatch.bpf.ringbuf import RingReader
from runwatch.bpf.spec import MapDecl, ObjectSpec, ProgramDecl
from runwatch.policy.enforce.spec import EnforcementError

ENF_OFF, ENF_MONITOR, ENF_ENFORCE = 0, 1, 2
HOOK_CONNECT4, HOOK_CONNECT6, HOOK_SENDMSG4, HOOK_SENDMSG6, HOOK_EXEC = 1, 2, 3, 4, 5
HOOK_SOCKET, HOOK_PACKET, HOOK_MAP_EXEC, HOOK_HOLD = 6, 7, 8, 9
SOCK_RAW_BIT, SOCK_PACKET_BIT = 1, 2
WHY_DENIED, WHY_LOADER, WHY_NO_PATH = 1, 2, 3
EXEC_ALLOWLIST_BIT = 1
V_DENY, V_WOULD_DENY, V_KILL, V_WOULD_KILL, V_HOLD = 1, 2, 3, 4, 5
MAX_PORTS = 16
EXEC_PROGRAM = "enf_exec"
HOLD_PROGRAM = "enf_cgroup_mkdir"
RING_BYTES = 1 << 20

MODE_CODES = {"monitor": ENF_MONITOR, "enforce": ENF_ENFORCE}


class CgCfg(ctypes.Structure):
    """Mirrors struct enf_cg_cfg."""

    _fields_ = [("egress", ctypes.c_uint32), ("kill", ctypes.c_uint32), ("sockets", ctypes.c_uint32),
                ("exec_flags", ctypes.c_uint32), ("guard", ctypes.c_uint32)]


class AllowKey(ctypes.Structure):
    """Mirrors struct enf_allow_key."""

    _fields_ = [("prefixlen", ctypes.c_uint32), ("data", ctypes.c_uint8 * 24)]


class AllowVal(ctypes.Structure):
    """Mirrors struct enf_allow_val."""

    _fields_ = [("any_port", ctypes.c_uint32), ("nports", ctypes.c_uint32),
                ("ports", ctypes.c_uint16 * MAX_PORTS)]


class KillKey(ctypes.Structure):
    """Mirrors struct enf_kill_key."""

    _fields_ = [("cgid", ctypes.c_uint64), ("ino", ctypes.c_uint64), ("dev", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class EnfRecord(ctypes.Structure):
    """Mirrors struct enf_record (one decision from the kernel)."""

    _fields_ = [
        ("ts", ctypes.c_uint64),
        ("policy_cgid", ctypes.c_uint64),
        ("cgid", ctypes.c_uint64),
        ("latency_ns", ctypes.c_uint64),
        ("ino", ctypes.c_uint64),
        ("dev", ctypes.c_uint32),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("hook", ctypes.c_uint32),
        ("verdict", ctypes.c_uint32),
        ("port", ctypes.c_uint16),
        ("proto", ctypes.c_uint16),
        ("addr", ctypes.c_uint8 * 16),
        ("comm", ctypes.c_char * 16),
        ("family", ctypes.c_uint16),
        ("stype", ctypes.c_uint16),
        ("why", ctypes.c_uint32),
    ]


LAYOUTS: dict[str, type[ctypes.Structure]] = {
    "enf_cg_cfg": CgCfg, "enf_allow_key": AllowKey, "enf_allow_val": AllowVal,
    "enf_kill_key": KillKey, "enf_record": EnfRecord,
}
"""BTF struct name -> ctypes mirror (checked against the built object by the tests)."""


def object_path() -> Path:
    """The built object: ``$RUNWATCH_ENFORCE_BPF_OBJ``, else ``bpf/build/enforce.bpf.o`` here."""
    env = os.environ.get("RUNWATCH_ENFORCE_BPF_OBJ")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "bpf" / "build" / "enforce.bpf.o"


SPEC = ObjectSpec(
    name="enforce.bpf.o",
    locate=object_path,
    header="enforce.h",
    struct_prefix="enf_",
    programs=(
        ProgramDecl("enf_connect4", "cgroup/connect4", "cgroup_sock_addr", "cgroup_inet4_connect"),
        ProgramDecl("enf_connect6", "cgroup/connect6", "cgroup_sock_addr", "cgroup_inet6_connect"),
        ProgramDecl("enf_sendmsg4", "cgroup/sendmsg4", "cgroup_sock_addr", "cgroup_udp4_sendmsg"),
        ProgramDecl("enf_sendmsg6", "cgroup/sendmsg6", "cgroup_sock_addr", "cgroup_udp6_sendmsg"),
        ProgramDecl("enf_sock_create", "cgroup/sock_create", "cgroup_sock", "cgroup_inet_sock_create"),
        ProgramDecl("enf_sys_enter", "tp_btf/sys_enter", "tracing", "trace_raw_tp"),
        ProgramDecl("enf_uring_socket", "tp_btf/io_uring_submit_req", "tracing", "trace_raw_tp"),
        ProgramDecl(EXEC_PROGRAM, "tp_btf/sched_process_exec", "tracing", "trace_raw_tp"),
        ProgramDecl(HOLD_PROGRAM, "tp_btf/cgroup_mkdir", "tracing", "trace_raw_tp"),
    ),
    maps=(
        MapDecl("decisions", "ringbuf", 0, 0, RING_BYTES),
        MapDecl("lost", "percpu_array", 4, 8, 1),
        MapDecl("cg_cfg", "hash", 8, ctypes.sizeof(CgCfg), 4096),
        MapDecl("allow", "lpm_trie", ctypes.sizeof(AllowKey), ctypes.sizeof(AllowVal), 65536),
        MapDecl("kill_set", "hash", ctypes.sizeof(KillKey), 4, 16384),
        MapDecl("hold_scope", "hash", 8, 4, 256),
        MapDecl("heartbeat", "array", 4, 8, 1),
        MapDecl("held", "lru_hash", 8, 8, 8192),
        MapDecl(".bss", "array", 4, 2 * 8, 1),  # the two struct-pointer anchors that keep structs in BTF
    ),
    structs=LAYOUTS,
)
"""The enforcement object as data (checked against the built object by the layout test)."""

EGRESS_PROGRAMS: tuple[str, ...] = tuple(p.name for p in SPEC.programs
                                         if p.prog_type in ("cgroup_sock_addr", "cgroup_sock"))
SYSCALL_PROGRAMS = ("enf_sys_enter", "enf_uring_socket")
"""Host-wide programs that kill a policed task asking for an AF_PACKET socket or mapping a
stopped executable (the ELF loader's way to run a program without exec)."""
"""The programs :meth:`EnforceObject.attach_cgroup` attaches, in declaration order."""


def kernel_dev(st_dev: int) -> int:
    """A userspace ``st_dev`` in the kernel's internal dev_t encoding (``s_dev``: major<<20 | minor)."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


class EnforceObject:
    """The loaded object; see the module docstring. Call :meth:`close` exactly once."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or object_path()
        try:
            self._obj = BpfObject(path)
        except (FileNotFoundError, LibbpfError) as exc:
            raise EnforcementError(
                f"cannot open {path}: {exc} (build it: make -C src/runwatch/policy/enforce/bpf)") from exc
        try:
            self._obj.load()
        except LibbpfError as exc:
            self._obj.close()
            raise EnforcementError(f"the kernel refused the enforcement programs: {exc.strerror}") from exc
        self._lock = threading.Lock()
        self._modes: dict[int, tuple[int, int, int, int, int]] = {}
        self._cfg_fd = self._obj.map_fd("cg_cfg")
        self._allow_fd = self._obj.map_fd("allow")
        self._kill_fd = self._obj.map_fd("kill_set")
        self._lost_fd = self._obj.map_fd("lost")
        self._scope_fd = self._obj.map_fd("hold_scope")
        self._held_fd = self._obj.map_fd("held")
        self._beat_fd = self._obj.map_fd("heartbeat")
        self.hold_link = 0
        self.pins = PinDir()
        self._cg_links: dict[str, list[tuple[str, int]]] = {}  # cgroup dir -> (program, link)
        self._ncpu = possible_cpus()
        self.ring = RingReader(self._obj.map_fd("decisions"), RING_BYTES)
        self.exec_link = 0
        self.exec_problem: str | None = None
        self.syscall_links: list[int] = []
        self.syscall_problem: str | None = None
        try:
            self.exec_link = self._obj.attach(EXEC_PROGRAM)
        except LibbpfError as exc:
            self.exec_problem = f"attach to tp_btf/sched_process_exec failed: {exc.strerror}"

    # -- cgroup links -------------------------------------------------------------------

    def attach_cgroup(self, cgroup_dir: Path) -> list[int]:
        """Attach the four egress programs to ``cgroup_dir``; return their links."""
        try:
            fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise EnforcementError(f"cannot open cgroup {cgroup_dir}: {exc.strerror}") from exc
        links: list[int] = []
        try:
            with self._lock:
                self._attach_syscall_hooks()
                for name in EGRESS_PROGRAMS:
                    try:
                        links.append(self._obj.attach_cgroup(name, fd))
                    except LibbpfError as exc:
                        self._obj.destroy(links)
                        raise EnforcementError(f"attaching {name} to {cgroup_dir} failed: {exc.strerror}") from exc
                self._cg_links[str(cgroup_dir)] = list(zip(EGRESS_PROGRAMS, links, strict=True))
        finally:
            os.close(fd)  # the links hold their own reference to the cgroup
        return links

    def attach_syscall_hooks(self) -> str | None:
        """Attach :data:`SYSCALL_PROGRAMS` (once); returns what failed, or None."""
        with self._lock:
            self._attach_syscall_hooks()
            return self.syscall_problem

    def _attach_syscall_hooks(self) -> None:
        if self.syscall_links or self.syscall_problem:
            return
        for name in SYSCALL_PROGRAMS:
            try:
                self.syscall_links.append(self._obj.attach(name))
            except LibbpfError as exc:
                self.syscall_problem = f"attach of {name} failed: {exc.strerror}"

    def detach(self, links: list[int]) -> None:
        """Destroy links made by :meth:`attach_cgroup`, pinned or not (the list is emptied)."""
        with self._lock:
            for link in links:
                self.pins.unpin(link)
            gone = set(links)
            for cg, named in list(self._cg_links.items()):
                if any(link in gone for _, link in named):
                    del self._cg_links[cg]
            self._obj.destroy(links)
            links.clear()

    # -- fail closed beyond this process -----------------------------------------------

    def guard(self, cgid: int, cgroup_dir: Path, cgroup: str) -> None:
        """Make policy cgroup ``cgid`` (``cgroup``, its v2 path) fail closed beyond this process:
        its links and the host-wide exec and syscall hooks are pinned, and its tasks are
        killed at their next system call once :meth:`beat` stops. Raises EnforcementError."""
        problem = self.attach_syscall_hooks()
        if problem:
            raise EnforcementError(f"cannot fail closed beyond runwatch: {problem}")
        with self._lock:
            try:
                if self.exec_link:
                    self.pins.pin(self.exec_link, EXEC_PROGRAM)
                for name, link in zip(SYSCALL_PROGRAMS, self.syscall_links, strict=False):
                    self.pins.pin(link, name)
                for name, link in self._cg_links.get(str(cgroup_dir), []):
                    pin_name = cgroup_pin_name(cgroup, name) or f"cg-id={cgid}={name}"
                    self.pins.pin(link, pin_name)
            except LibbpfError as exc:
                raise EnforcementError(f"cannot fail closed beyond runwatch: {exc.strerror}") from exc
        self.set_mode(cgid, guard=1)
        self.beat()

    def unguard(self, cgid: int, cgroup_dir: Path) -> None:
        """Undo :meth:`guard` for one cgroup (the host-wide pins stay until :meth:`close`)."""
        self.set_mode(cgid, guard=0)
        with self._lock:
            for _, link in self._cg_links.get(str(cgroup_dir), []):
                self.pins.unpin(link)

    def beat(self, now_ns: int | None = None) -> None:
        """Tell the guard runwatch is alive (``now_ns``: CLOCK_MONOTONIC ns; 0 turns it off)."""
        val = ctypes.c_uint64(time.monotonic_ns() if now_ns is None else now_ns)
        lib().bpf_map_update_elem(self._beat_fd, ctypes.byref(ctypes.c_uint32(0)), ctypes.byref(val), 0)

    # -- maps ---------------------------------------------------------------------------

    def set_mode(self, cgid: int, *, egress: int | None = None, kill: int | None = None,
                 sockets: int | None = None, exec_flags: int | None = None, guard: int | None = None) -> None:
        """Set the egress and/or kill mode of a policy cgroup, the socket kinds (SOCK_*_BIT) its
        egress allows, its EXEC_*_BIT flags and its guard (ENF_OFF removes its entry when both
        modes are off and it is not guarded)."""
        with self._lock:
            old = self._modes.get(cgid, (ENF_OFF, ENF_OFF, 0, 0, 0))
            new = (old[0] if egress is None else egress, old[1] if kill is None else kill,
                   old[2] if sockets is None else sockets, old[3] if exec_flags is None else exec_flags,
                   old[4] if guard is None else guard)
            key = ctypes.c_uint64(cgid)
            if new[:2] == (ENF_OFF, ENF_OFF) and not new[4]:
                self._modes.pop(cgid, None)
                lib().bpf_map_delete_elem(self._cfg_fd, ctypes.byref(key))
                return
            val = CgCfg(*new)
            self._update(self._cfg_fd, key, val, "cg_cfg")
            self._modes[cgid] = new

    def allow_put(self, key: AllowKey, val: AllowVal) -> None:
        """Insert or replace one allow-trie entry."""
        with self._lock:
            self._update(self._allow_fd, key, val, "allow")

    def allow_delete(self, key: AllowKey) -> None:
        """Remove one allow-trie entry (absent entries are ignored)."""
        with self._lock:
            lib().bpf_map_delete_elem(self._allow_fd, ctypes.byref(key))

    def kill_put(self, key: KillKey, why: int = WHY_DENIED) -> None:
        """Add an executable to the kill set, with why it is stopped (WHY_*)."""
        with self._lock:
            self._update(self._kill_fd, key, ctypes.c_uint32(why), "kill_set")

    def kill_delete(self, key: KillKey) -> None:
        """Remove an executable from the kill set."""
        with self._lock:
            lib().bpf_map_delete_elem(self._kill_fd, ctypes.byref(key))

    def hold_scope_add(self, cgid: int) -> None:
        """Hold the cgroups that tasks in cgroup ``cgid`` (or below) create from now on: their
        first exec stops until :meth:`release`. Attaches the mkdir program on first use."""
        with self._lock:
            if not self.hold_link:
                try:
                    self.hold_link = self._obj.attach(HOLD_PROGRAM)
                except LibbpfError as exc:
                    raise EnforcementError(f"attach to tp_btf/cgroup_mkdir failed: {exc.strerror}") from exc
            self._update(self._scope_fd, ctypes.c_uint64(cgid), ctypes.c_uint32(1), "hold_scope")

    def hold_scope_remove(self, cgid: int) -> None:
        """Stop holding what tasks in ``cgid`` create (cgroups held already stay held)."""
        with self._lock:
            lib().bpf_map_delete_elem(self._scope_fd, ctypes.byref(ctypes.c_uint64(cgid)))

    def is_held(self, cgid: int) -> bool:
        """Whether cgroup ``cgid`` is held (its policy not bound yet)."""
        val = ctypes.c_uint64(0)
        with self._lock:
            rc: int = lib().bpf_map_lookup_elem(self._held_fd, ctypes.byref(ctypes.c_uint64(cgid)),
                                                ctypes.byref(val))
        return rc == 0

    def release(self, cgid: int) -> None:
        """Let execs in cgroup ``cgid`` run (its policy is bound, or none applies)."""
        with self._lock:
            lib().bpf_map_delete_elem(self._held_fd, ctypes.byref(ctypes.c_uint64(cgid)))

    def release_all(self) -> int:
        """Let execs run in every held cgroup (nothing will bind them any more); how many."""
        n = 0
        key, nxt = ctypes.c_uint64(0), ctypes.c_uint64(0)
        with self._lock:
            while lib().bpf_map_get_next_key(self._held_fd, None, ctypes.byref(nxt)) == 0 and n < 1 << 20:
                key.value = nxt.value
                lib().bpf_map_delete_elem(self._held_fd, ctypes.byref(key))
                n += 1
        return n

    def _update(self, fd: int, key: ctypes._CData, val: ctypes._CData, name: str) -> None:
        rc = lib().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(val), 0)
        if rc < 0:
            err = ctypes.get_errno() or -rc
            raise EnforcementError(f"updating BPF map {name} failed: {os.strerror(err)}")

    def lost(self) -> int:
        """Decision records the kernel could not queue (ring full), summed over CPUs."""
        values = (ctypes.c_uint64 * self._ncpu)()
        key = ctypes.c_uint32(0)
        if lib().bpf_map_lookup_elem(self._lost_fd, ctypes.byref(key), values) != 0:
            return 0
        return int(sum(values))

    # -- records ------------------------------------------------------------------------

    def drain(self) -> list[EnfRecord]:
        """Every decision record queued so far (copies). One draining thread only."""
        size = ctypes.sizeof(EnfRecord)

        def one(chunk: bytes, offset: int, length: int) -> EnfRecord | None:
            if length < size:
                return None
            return EnfRecord.from_buffer_copy(chunk, offset)

        return self.ring.drain(one)

    def close(self) -> None:
        """Detach the exec program and every cgroup link still attached, then free the object."""
        with self._lock:
            self.pins.clear()  # a clean stop leaves nothing in force
            self.exec_link = self.hold_link = 0
            self.syscall_links = []
            self._cg_links.clear()
            if self._obj.ptr:
                self.ring.close()
                self._obj.close()

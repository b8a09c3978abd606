"""File and exec enforcement with fanotify permission events, answered from the policy.

One fanotify group (``FAN_CLASS_CONTENT``, ``FAN_REPORT_TID``) per container:

* protected secrets and immutable paths: marks planned by
  :func:`runwatch.policy.enforce.targets.plan_marks` in the container's view (``/proc/<pid>/root``
  and its mount table): an inode mark (``FAN_OPEN_PERM``) on each literal file and on every
  existing file a ``dir/`` prefix or glob matches (bind-mounted files included: a runc or
  Kubernetes secret is a bind mount of a host file, whose dentry is not a child of the
  directory), ``FAN_EVENT_ON_CHILD`` marks on the directories (files created later), mount
  marks on directory mounts below them. When the container's mount table changes (poll on
  ``/proc/<pid>/mountinfo``) the targets are planned again and new files marked. A pattern
  that cannot be marked fails ``apply`` with the policy file and line.
* exec: a *mount* mark (``FAN_OPEN_EXEC_PERM``) on each of the container's own mounts
  (reached through ``/proc/<pid>/root``), so only execs inside that container pay.

Nothing else on the machine is marked, so other opens cost nothing. Files are identified
by ``fstat`` (device, inode) of the event fd, processes by ``stat`` of ``/proc/<tid>/exe``;
literal rules (``/bin/sh``, a reader ``/usr/bin/python3``) are resolved to inodes when the
policy is applied, so symlinks, hard links and ``./x`` do not bypass them. Globs match the
path of the event fd (the container's view). Verdicts are cached per inode.

Write intent (immutable paths): fanotify does not report the opener's flags, so the
responder reads them from ``/proc/<tid>/syscall`` of the blocked thread
(:mod:`runwatch.policy.enforce.intent`); when they cannot be known (io_uring, any call that is
not an open) ``fail: closed`` counts the open as a write and ``fail: open`` as a read.

Contracts: the responder never opens a file on a marked inode or mount (it would wait on
itself); events of this process's own threads are always allowed at once. Closing a group
(``remove``, ``stop``, or the process dying) drops its marks and allows its pending events.
One responder thread answers every group; ``apply``/``remove`` may be called from any thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runwatch.host import procfs
from runwatch.host.mounts import Mount, read_mountinfo
from runwatch.policy.enforce.execrules import ExecIndex, literal_keys
from runwatch.policy.enforce.intent import open_intent
from runwatch.policy.enforce.paths import target_cgroup, within
from runwatch.policy.enforce.spec import Enforcement, EnforcementError, Target, Verdict
from runwatch.policy.enforce.targets import PSEUDO_FS, TargetError, plan_marks
from runwatch.policy.model import Policy, first_match, path_match

FAN_CLOEXEC, FAN_NONBLOCK, FAN_CLASS_CONTENT, FAN_REPORT_TID = 0x1, 0x2, 0x4, 0x100
FAN_MARK_ADD, FAN_MARK_MOUNT = 0x1, 0x10
FAN_OPEN_PERM, FAN_OPEN_EXEC_PERM, FAN_EVENT_ON_CHILD = 0x10000, 0x40000, 0x08000000
FAN_ALLOW, FAN_DENY = 1, 2
AT_FDCWD = -100
_META = struct.Struct("=IBBHQii")
_RESP = struct.Struct("=iI")
_CACHE_MAX = 65536

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
_libc.fanotify_mark.restype = ctypes.c_int

Key = tuple[int, int]  # (st_dev, st_ino)


def _mark(fd: int, flags: int, mask: int, path: str) -> None:
    if _libc.fanotify_mark(fd, FAN_MARK_ADD | flags, mask, AT_FDCWD, path.encode()) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fanotify_mark {path}: {os.strerror(err)}")


@dataclass
class _FileClass:
    protect_idx: int | None
    immutable: str | None


@dataclass
class _FileTarget:
    """One ``files`` pattern of a policy: its rule name and the form event paths match (set by planning)."""

    rule: str
    pattern: str
    protect_idx: int | None = None
    immutable: str | None = None
    match: str = ""


@dataclass
class _Group:
    fd: int
    target_id: str
    cgroup: str
    policy: Policy
    pid: int = 0
    targets: list[_FileTarget] = field(default_factory=list)
    mounts_fd: int | None = None  # /proc/<pid>/mountinfo, polled for mount table changes
    protect_keys: dict[Key, int] = field(default_factory=dict)  # literal protected file -> index
    reader_keys: list[set[Key]] = field(default_factory=list)  # per protect index
    immutable_keys: dict[Key, str] = field(default_factory=dict)
    exec_index: ExecIndex | None = None
    exec_skip: set[Key] = field(default_factory=set)  # handled by the BPF kill hook
    files: dict[tuple[Key, str], _FileClass] = field(default_factory=dict)  # by inode and the path opened
    execs: dict[Key, tuple[str, str, str]] = field(default_factory=dict)  # verdict, rule, path
    readers_ok: dict[tuple[int, Key], str | None] = field(default_factory=dict)
    allow_seen: set[tuple[int, Key]] = field(default_factory=set)  # (tid, file): allow already recorded


class FanotifyEnforcer:
    """Applies ``policy.files`` and ``policy.exec`` with fanotify; see the module docstring.

    ``emit`` receives every decision from the responder thread; it must be quick and must
    not block (put it on a queue).
    """

    def __init__(self, emit: Callable[[Enforcement], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._groups: dict[int, _Group] = {}
        self._by_target: dict[str, int] = {}
        self._by_mounts: dict[int, int] = {}  # mountinfo fd -> group fd
        self._ep = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ep.register(self._wake_r, select.EPOLLIN)
        self._stop = False
        self._thread: threading.Thread | None = None
        self.answered = 0
        self.rescans = 0

    def start(self) -> None:
        """Start the responder thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="runwatch-fanotify", daemon=True)
            self._thread.start()

    def apply(self, target: Target, policy: Policy, *, kill_handled: set[Key] | None = None) -> list[str]:
        """Mark what ``policy`` protects in ``target``; replaces an earlier policy there.

        ``kill_handled`` lists executables the BPF kill hook handles (allowed here so the
        kernel kills them). Returns notices (rules that could not be placed). Raises
        :class:`EnforcementError` if fanotify is unavailable or a needed mark fails.
        """
        self.remove(target.id)
        files, exe = policy.files, policy.exec
        if (files is None or not (files.protect or files.immutable)) and exe is None:
            return []
        try:
            cgroup = target_cgroup(target.cgroup_dir)
        except ValueError as exc:
            raise EnforcementError(str(exc)) from exc
        fd = _libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_CLASS_CONTENT | FAN_REPORT_TID,
                                 os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise EnforcementError(f"fanotify_init failed: {os.strerror(err)}")
        group = _Group(fd, target.id, cgroup, policy, pid=target.init_pid, exec_skip=set(kill_handled or ()))
        root = f"/proc/{target.init_pid}/root"
        notices: list[str] = []
        try:
            if files is not None:
                for i, prot in enumerate(files.protect):
                    group.reader_keys.append(literal_keys(root, prot.readers, notices, "reader"))
                    group.targets.append(_FileTarget(f"files.protect:{prot.path}", prot.path, protect_idx=i))
                group.targets.extend(_FileTarget(f"files.immutable:{p}", p, immutable=p) for p in files.immutable)
                self._place(group, _mounts_of(target.init_pid), strict=True)
            if exe is not None:
                group.exec_index = ExecIndex.build(exe, root, notices)
                self._mark_mounts(fd, target.init_pid)
            group.mounts_fd = os.open(f"/proc/{target.init_pid}/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self._close(group)
            raise
        with self._lock:
            self._groups[fd] = group
            self._by_target[target.id] = fd
            self._ep.register(fd, select.EPOLLIN)
            if group.mounts_fd is not None:
                self._by_mounts[group.mounts_fd] = fd
                self._ep.register(group.mounts_fd, select.EPOLLPRI | select.EPOLLERR)
        return notices

    def remove(self, target_id: str) -> None:
        """Drop a target's marks (closing its group allows its pending events). Unknown ids are ignored."""
        with self._lock:
            fd = self._by_target.pop(target_id, None)
            if fd is None:
                return
            group = self._groups.pop(fd, None)
            with contextlib.suppress(OSError):
                self._ep.unregister(fd)
            if group is None:
                os.close(fd)
                return
            if group.mounts_fd is not None:
                self._by_mounts.pop(group.mounts_fd, None)
                with contextlib.suppress(OSError):
                    self._ep.unregister(group.mounts_fd)
            self._close(group)

    @staticmethod
    def _close(group: _Group) -> None:
        """Close a group's fds (its marks go with the fanotify fd; pending events are allowed)."""
        if group.mounts_fd is not None:
            os.close(group.mounts_fd)
            group.mounts_fd = None
        os.close(group.fd)

    def stop(self) -> None:
        """Remove every target and stop the responder."""
        for target_id in list(self._by_target):
            self.remove(target_id)
        self._stop = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._ep.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- apply helpers ------------------------------------------------------------------

    @staticmethod
    def _place(group: _Group, mounts: list[Mount], *, strict: bool) -> None:
        """Plan and mark every ``files`` target of ``group`` (again: marks and keys only accumulate).

        ``strict`` (at apply): a target that cannot be marked raises :class:`EnforcementError`
        naming the policy file and line; otherwise (a rescan) it keeps the marks it has.
        """
        for t in group.targets:
            try:
                plan = plan_marks(group.pid, t.pattern, mounts)
                for path in plan.files.values():
                    _mark(group.fd, 0, FAN_OPEN_PERM, path)
                for path in plan.dirs:
                    _mark(group.fd, 0, FAN_OPEN_PERM | FAN_EVENT_ON_CHILD, path)
                for path in plan.mounts:
                    _mark(group.fd, FAN_MARK_MOUNT, FAN_OPEN_PERM, path)
            except (TargetError, OSError) as exc:
                if not strict:
                    continue
                if not os.path.exists(f"/proc/{group.pid}"):
                    raise EnforcementError(f"container {group.target_id} ended while its policy "
                                           f"{group.policy.id!r} was applied") from None
                why = str(exc) if isinstance(exc, TargetError) else f"fanotify refuses it ({exc.strerror})"
                files = group.policy.files
                where = (files.source_of(t.rule) if files is not None else "") or group.policy.source
                raise EnforcementError(f"{where}: policy {group.policy.id!r} {t.rule.replace(':', ' ', 1)} "
                                       f"cannot be enforced in container {group.target_id}: {why}") from None
            t.match = plan.match
            for key in plan.files:
                if t.protect_idx is not None:
                    group.protect_keys.setdefault(key, t.protect_idx)
                if t.immutable is not None:
                    group.immutable_keys.setdefault(key, t.immutable)
        group.files.clear()  # classifications made before may be stale

    @staticmethod
    def _mark_mounts(fd: int, pid: int) -> None:
        """Exec marks on every mount of the container (pseudo filesystems skipped)."""
        for mount in _mounts_of(pid):
            if mount.fstype in PSEUDO_FS:
                continue
            point = mount.point
            try:
                _mark(fd, FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, f"/proc/{pid}/root{point}")
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EACCES):
                    continue  # an overmounted or vanished mount point
                raise EnforcementError(f"cannot watch execs on {point}: {exc.strerror}") from exc

    # -- responder ----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop:
            try:
                ready = self._ep.poll(0.5)
            except OSError:
                return
            for fd, _ in ready:
                if fd == self._wake_r:
                    continue
                with self._lock:
                    if fd in self._by_mounts:
                        self._rescan(self._by_mounts[fd], fd)
                        continue
                    group = self._groups.get(fd)
                    if group is not None:
                        self._serve(group)

    def _rescan(self, group_fd: int, mounts_fd: int) -> None:
        """The container's mount table changed: mark what its targets now cover (mounts added)."""
        group = self._groups.get(group_fd)
        if group is None:
            return
        try:
            mounts = _mounts_of(group.pid)
        except EnforcementError:  # the container's init is gone: nothing more to watch
            self._by_mounts.pop(mounts_fd, None)
            with contextlib.suppress(OSError):
                self._ep.unregister(mounts_fd)
            return
        self._place(group, mounts, strict=False)
        if group.policy.exec is not None:
            with contextlib.suppress(EnforcementError):
                self._mark_mounts(group.fd, group.pid)
        self.rescans += 1

    def _serve(self, group: _Group) -> None:
        try:
            buf = os.read(group.fd, 8192)
        except BlockingIOError:
            return
        off = 0
        own = os.getpid()
        while off + _META.size <= len(buf):
            length, _, _, _, mask, efd, tid = _META.unpack_from(buf, off)
            off += length
            if efd < 0:
                continue
            t0 = time.perf_counter_ns()
            answer = FAN_ALLOW
            decision: tuple[Verdict, str, str, str, bool | None, str | None] | None = None
            try:
                if tid == own or os.path.exists(f"/proc/self/task/{tid}"):
                    pass  # never block runwatch itself
                elif mask & FAN_OPEN_EXEC_PERM:
                    answer, decision = self._decide_exec(group, efd, tid)
                else:
                    answer, decision = self._decide_open(group, efd, tid)
            except Exception as exc:  # a decision that cannot be made follows `fail`
                answer = FAN_ALLOW if group.policy.fail == "open" else FAN_DENY
                decision = ("deny" if answer == FAN_DENY else "would_deny", "fail." + group.policy.fail,
                            f"cannot decide: {exc}", "?", None, None)
            try:
                os.write(group.fd, _RESP.pack(efd, answer))
            finally:
                os.close(efd)
            self.answered += 1
            if decision is not None:
                verdict, rule, reason, path, write, exe = decision
                layer = "exec" if mask & FAN_OPEN_EXEC_PERM else "file"
                self._emit(Enforcement(
                    time_ns=time.time_ns(), layer=layer, verdict=verdict, policy_id=group.policy.id, rule=rule,
                    reason=reason, latency_ns=time.perf_counter_ns() - t0, mode=group.policy.mode, pid=tid,
                    target=path, container_id=group.target_id, exe=exe, write=write))

    def _in_target(self, group: _Group, tid: int) -> bool:
        cg = procfs.cgroup_path(tid)
        return cg is not None and within(cg, group.cgroup)

    def _deny(self, group: _Group) -> tuple[int, Verdict]:
        if group.policy.mode == "enforce":
            return FAN_DENY, "deny"
        return FAN_ALLOW, "would_deny"

    def _decide_open(self, group: _Group, efd: int, tid: int
                     ) -> tuple[int, tuple[Verdict, str, str, str, bool | None, str | None] | None]:
        st = os.fstat(efd)
        key = (st.st_dev, st.st_ino)
        path = _readlink(f"/proc/self/fd/{efd}") or "?"
        cls = group.files.get((key, path))  # a rename or a hard link is classified again
        if cls is None:
            cls = self._classify(group, path, key)
        if cls.protect_idx is None and cls.immutable is None:
            return FAN_ALLOW, None
        files = group.policy.files
        assert files is not None
        exe_path: str | None = None
        if cls.immutable is not None:
            intent = open_intent(tid)
            write = intent.write if intent.write is not None else group.policy.fail == "closed"
            if write and self._in_target(group, tid):
                answer, verdict = self._deny(group)
                exe_path = _readlink(f"/proc/{tid}/exe")
                reason = ("open for writing of an immutable path" if intent.write else
                          f"open of an immutable path whose write intent is unknown ({intent.via}); "
                          "fail: closed counts it as a write")
                return answer, (verdict, f"files.immutable:{cls.immutable}", reason, path, intent.write,
                                exe_path)
        if cls.protect_idx is None:
            return FAN_ALLOW, None
        prot = files.protect[cls.protect_idx]
        exe_st = os.stat(f"/proc/{tid}/exe")
        exe_key = (exe_st.st_dev, exe_st.st_ino)
        ok_key = (cls.protect_idx, exe_key)
        if ok_key not in group.readers_ok:
            if len(group.readers_ok) > _CACHE_MAX:
                group.readers_ok.clear()
            if exe_key in group.reader_keys[cls.protect_idx]:
                group.readers_ok[ok_key] = "reader"
            else:
                exe_path = _readlink(f"/proc/{tid}/exe")
                hit = first_match(prot.readers, exe_path) if exe_path else None
                group.readers_ok[ok_key] = hit
        rule = f"files.protect:{prot.path}"
        if group.readers_ok[ok_key] is not None:
            seen = (tid, key)
            if seen in group.allow_seen:
                return FAN_ALLOW, None  # recorded once per thread and file, not per open
            if len(group.allow_seen) > _CACHE_MAX:
                group.allow_seen.clear()
            group.allow_seen.add(seen)
            exe_path = exe_path or _readlink(f"/proc/{tid}/exe")
            return FAN_ALLOW, ("allow", rule, "listed reader", path, False, exe_path)
        if not self._in_target(group, tid):
            return FAN_ALLOW, None
        answer, verdict = self._deny(group)
        exe_path = exe_path or _readlink(f"/proc/{tid}/exe")
        return answer, (verdict, rule, "not a listed reader of a protected file", path, None, exe_path)

    def _classify(self, group: _Group, path: str, key: Key) -> _FileClass:
        protect_idx = group.protect_keys.get(key)
        immutable = group.immutable_keys.get(key)
        for t in group.targets:  # by path: files that appeared after the targets were planned
            if t.match and path_match(t.match, path):
                if protect_idx is None and t.protect_idx is not None:
                    protect_idx = t.protect_idx
                if immutable is None and t.immutable is not None:
                    immutable = t.immutable
        cls = _FileClass(protect_idx, immutable)
        if len(group.files) > _CACHE_MAX:
            group.files.clear()
        group.files[(key, path)] = cls
        return cls

    def _decide_exec(self, group: _Group, efd: int, tid: int
                     ) -> tuple[int, tuple[Verdict, str, str, str, bool | None, str | None] | None]:
        st = os.fstat(efd)
        key = (st.st_dev, st.st_ino)
        if key in group.exec_skip:
            return FAN_ALLOW, None  # the BPF kill hook acts on this one
        cached = group.execs.get(key)
        if cached is None:
            cached = self._exec_verdict(group, efd, key)
        verdict, rule, path = cached
        if verdict == "allow" or not self._in_target(group, tid):
            return FAN_ALLOW, None
        answer, out = self._deny(group)
        assert group.policy.exec is not None
        reason = "executable not allowed by the exec policy"
        if group.policy.exec.action == "kill" and group.policy.mode == "enforce":
            with contextlib.suppress(ProcessLookupError):
                os.kill(tid, signal.SIGKILL)
            out, reason = "kill", reason + " (killed)"
        return answer, (out, rule, reason, path, None, None)

    def _exec_verdict(self, group: _Group, efd: int, key: Key) -> tuple[str, str, str]:
        assert group.exec_index is not None
        path = _readlink(f"/proc/self/fd/{efd}") or "?"
        out = (*group.exec_index.verdict(path, key), path)
        if len(group.execs) > _CACHE_MAX:
            group.execs.clear()
        group.execs[key] = out
        return out


def _mounts_of(pid: int) -> list[Mount]:
    """The mount table of ``pid``'s mount namespace; raises EnforcementError when it cannot be read."""
    try:
        return read_mountinfo(f"/proc/{pid}/mountinfo")
    except OSError as exc:
        raise EnforcementError(f"cannot read the mounts of pid {pid}: {exc.strerror}") from exc


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None

"""Kill in the kernel: ``bpf_send_signal(SIGKILL)`` before a stopped program's first instruction.

For every policy with exec rules, the ``kill_set`` map holds, under the container's cgroup
id, the (inode, device) of:

* each literal ``exec.deny`` path, resolved in the container's view (``WHY_DENIED``);
* the ELF loaders (:data:`~runwatch.policy.enforce.execrules.LOADERS`) unless the allow list
  names them (``WHY_LOADER``): run as a program (``ld.so /usr/bin/dash``) the loader
  opens its target with a plain read, which no exec check sees.

Two host-wide programs consult it: ``tp_btf/sched_process_exec`` for the new image of an
exec, and ``tp_btf/sys_enter`` for ``mmap``/``mprotect`` with ``PROT_EXEC`` of a file (how
a loader maps the program it runs). Under an allow list, a file on no mounted path (a
memfd) executed or mapped executable is stopped as well (``WHY_NO_PATH``). Matching by
inode means ``./x``, symlinks and hard links do not bypass it. After exec's point of no
return the parent sees SIGKILL (exit 137); monitor mode records the kill it would have
made.

With ``action: kill`` (and in monitor mode) the fanotify enforcer lets the literal denies
through so the kernel kills (or records) them; with ``action: deny`` it refuses their exec
(EPERM) and the kernel acts only on what fanotify cannot see (the mapping, the loader,
memfd, a mount made after the policy was applied). Globs cannot be expressed as an
inode set: those execs are refused by the fanotify enforcer, which sends SIGKILL from
userspace for ``action: kill`` (:func:`kill_pid`).

Thread safety: methods may be called from any thread (the object serialises map updates).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

from runwatch.policy.enforce import bpfobj as B
from runwatch.policy.enforce.execrules import stopped_loaders
from runwatch.policy.enforce.paths import check_not_own, resolve_in_root
from runwatch.policy.enforce.spec import Enforcement, EnforcementError, Target, Verdict, mono_to_wall_ns
from runwatch.policy.model import Policy, is_glob

Key = tuple[int, int]

_REASONS = {
    (B.HOOK_EXEC, B.WHY_DENIED): "exec of a denied executable",
    (B.HOOK_EXEC, B.WHY_LOADER): "the ELF loader run as a program",
    (B.HOOK_EXEC, B.WHY_NO_PATH): "exec of a file on no mounted path (memfd) under an exec allow list",
    (B.HOOK_MAP_EXEC, B.WHY_DENIED): "a denied executable mapped executable (run through the ELF loader)",
    (B.HOOK_MAP_EXEC, B.WHY_LOADER): "the ELF loader mapped executable",
    (B.HOOK_MAP_EXEC, B.WHY_NO_PATH): "a file on no mounted path (memfd) mapped executable under an exec allow list",
}


@dataclass
class _Applied:
    cgid: int
    policy: Policy
    keys: list[B.KillKey]
    names: dict[Key, tuple[int, str]]  # (kernel dev, ino) -> why, the pattern or path


class KillEnforcer:
    """Keeps the BPF kill set in step with the applied policies; see the module docstring."""

    def __init__(self, obj: B.EnforceObject) -> None:
        self._obj = obj
        self._lock = threading.Lock()
        self._applied: dict[str, _Applied] = {}

    @property
    def available(self) -> bool:
        """Whether the exec hook is attached (else only userspace kills are possible)."""
        return self._obj.exec_link != 0

    def apply(self, target: Target, policy: Policy) -> tuple[set[Key], list[str]]:
        """Load the kill set of ``policy`` for ``target``; replaces an earlier one.

        Returns the executables (st_dev, st_ino) the fanotify enforcer must let through so
        the kernel kills them (the literal denies of ``action: kill``) and notices.
        """
        self.remove(target.id)
        rules = policy.exec
        if rules is None or not (rules.deny or rules.allow is not None):
            return set(), []
        if not self.available:
            if rules.action != "kill":
                return set(), [f"exec kill hook unavailable ({self._obj.exec_problem}): the ELF loader and "
                               "memfd are not stopped"]
            return set(), [f"exec kill hook unavailable ({self._obj.exec_problem}); killing from userspace"]
        try:
            check_not_own(target.cgroup_dir)
        except ValueError as exc:
            raise EnforcementError(str(exc)) from exc
        notices: list[str] = []
        problem = self._obj.attach_syscall_hooks()
        if problem:
            notices.append(f"executable mappings are not checked ({problem}): the ELF loader run as a program "
                           "is stopped only at its exec")
        entry = _Applied(target.cgroup_id, policy, [], {})
        root = f"/proc/{target.init_pid}/root"
        handled: set[Key] = set()
        for pattern in rules.deny:
            if is_glob(pattern):
                continue
            st = self._stat(root, pattern, "exec.deny", notices)
            if st is not None:
                self._put(entry, st, B.WHY_DENIED, pattern)
                handled.add((st.st_dev, st.st_ino))
        for loader in stopped_loaders(rules):
            st = self._stat(root, loader, "", None)
            if st is not None and (B.kernel_dev(st.st_dev), st.st_ino) not in entry.names:
                self._put(entry, st, B.WHY_LOADER, loader)
        flags = B.EXEC_ALLOWLIST_BIT if rules.allow is not None else 0
        self._obj.set_mode(entry.cgid, kill=B.MODE_CODES[policy.mode], exec_flags=flags)
        with self._lock:
            self._applied[target.id] = entry
        # fanotify refuses the exec of a literal deny (EPERM) unless the kernel is to kill it,
        # or only to record it: then one record comes from the kernel alone
        return (handled if rules.action == "kill" or policy.mode == "monitor" else set()), notices

    @staticmethod
    def _stat(root: str, path: str, what: str, notices: list[str] | None) -> os.stat_result | None:
        try:
            return os.stat(resolve_in_root(root, path))
        except OSError as exc:
            if notices is not None:
                notices.append(f"{what} {path}: not found in the container ({exc.strerror})")
            return None

    def _put(self, entry: _Applied, st: os.stat_result, why: int, name: str) -> None:
        key = B.KillKey(entry.cgid, st.st_ino, B.kernel_dev(st.st_dev), 0)
        self._obj.kill_put(key, why)
        entry.keys.append(key)
        entry.names[(key.dev, key.ino)] = (why, name)

    def remove(self, target_id: str) -> None:
        """Clear a target's kill set. Unknown ids are ignored."""
        with self._lock:
            entry = self._applied.pop(target_id, None)
        if entry is None:
            return
        self._obj.set_mode(entry.cgid, kill=B.ENF_OFF, exec_flags=0)
        for key in entry.keys:
            self._obj.kill_delete(key)

    def close(self) -> None:
        """Remove every target."""
        for target_id in list(self._applied):
            self.remove(target_id)

    def decision(self, rec: B.EnfRecord) -> Enforcement | None:
        """The decision for one kernel exec or mapping record (None if its policy is gone)."""
        with self._lock:
            found = [(tid, e) for tid, e in self._applied.items() if e.cgid == rec.policy_cgid]
        if not found:
            return None
        target_id, entry = found[0]
        why = int(rec.why) or B.WHY_DENIED
        _, name = entry.names.get((int(rec.dev), int(rec.ino)), (why, "?"))
        if why == B.WHY_DENIED:
            rule = f"exec.deny:{name}"
        elif why == B.WHY_LOADER:
            rule = f"exec.loader:{name}"
        else:
            rule, name = "exec.default", "memfd"
        verdict: Verdict = "kill" if rec.verdict == B.V_KILL else "would_deny"
        what = _REASONS.get((int(rec.hook), why), "a stopped executable")
        reason = f"{what}, killed in the kernel" if verdict == "kill" else f"{what} would be killed (monitor)"
        return Enforcement(
            time_ns=mono_to_wall_ns(rec.ts), layer="exec", verdict=verdict, policy_id=entry.policy.id,
            rule=rule, reason=reason, latency_ns=int(rec.latency_ns), mode=entry.policy.mode,
            pid=int(rec.pid), target=name, container_id=target_id, cgroup_id=int(rec.cgid),
            comm=rec.comm.decode(errors="replace"),
        )


def kill_pid(pid: int, policy: Policy, rule: str, reason: str, target: str = "") -> Enforcement:
    """SIGKILL ``pid`` from userspace for ``policy`` (monitor mode only records it)."""
    t0 = time.perf_counter_ns()
    verdict: Verdict = "would_deny"
    if policy.mode == "enforce":
        try:
            os.kill(pid, signal.SIGKILL)
            verdict = "kill"
        except ProcessLookupError:
            reason += " (already gone)"
            verdict = "kill"
    return Enforcement(time_ns=time.time_ns(), layer="exec", verdict=verdict, policy_id=policy.id, rule=rule,
                    reason=reason, latency_ns=time.perf_counter_ns() - t0, mode=policy.mode, pid=pid,
                    target=target)

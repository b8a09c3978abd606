"""Kill at exec: ``bpf_send_signal(SIGKILL)`` from ``tp_btf/sched_process_exec``, else from userspace.

For a policy whose ``exec.action`` is ``kill``, every literal ``exec.deny`` path is resolved
in the container's view to its (inode, device) and put in the ``kill_set`` map under the
container's cgroup id. The exec program runs for every exec on the host, finds the
policy by the task's cgroup (or nearest policed ancestor) and kills the task before the new
image runs its first instruction; the parent sees SIGKILL (exit 137). Matching by inode
means ``./x``, symlinks and hard links do not bypass it. Monitor mode records the kill it
would have made.

Globs and allow lists cannot be expressed as an inode set: those execs are refused by the
fanotify enforcer, which then sends SIGKILL from userspace (:func:`kill_pid`).

Thread safety: methods may be called from any thread (the object serialises map updates).
"""

from __future__ import annotations

import os
import signal
import threading
import time

from runwatch.policy.enforce import bpfobj as B
from runwatch.policy.enforce.paths import check_not_own, resolve_in_root
from runwatch.policy.enforce.spec import Enforcement, EnforcementError, Target, Verdict, mono_to_wall_ns
from runwatch.policy.model import Policy, is_glob

Key = tuple[int, int]


class KillEnforcer:
    """Keeps the BPF kill set in step with the applied policies; see the module docstring."""

    def __init__(self, obj: B.EnforceObject) -> None:
        self._obj = obj
        self._lock = threading.Lock()
        self._applied: dict[str, tuple[int, Policy, list[B.KillKey], dict[Key, str]]] = {}

    @property
    def available(self) -> bool:
        """Whether the exec hook is attached (else only userspace kills are possible)."""
        return self._obj.exec_link != 0

    def apply(self, target: Target, policy: Policy) -> tuple[set[Key], list[str]]:
        """Load the kill set of ``policy`` for ``target``; replaces an earlier one.

        Returns the executables (st_dev, st_ino) now handled in the kernel (the fanotify
        enforcer lets those through so the kernel kills them) and notices.
        """
        self.remove(target.id)
        rules = policy.exec
        if rules is None or rules.action != "kill" or not rules.deny:
            return set(), []
        if not self.available:
            return set(), [f"exec kill hook unavailable ({self._obj.exec_problem}); killing from userspace"]
        try:
            check_not_own(target.cgroup_dir)
        except ValueError as exc:
            raise EnforcementError(str(exc)) from exc
        cgid = target.cgroup_id
        root = f"/proc/{target.init_pid}/root"
        keys: list[B.KillKey] = []
        handled: dict[Key, str] = {}
        notices: list[str] = []
        for pattern in rules.deny:
            if is_glob(pattern):
                continue
            try:
                st = os.stat(resolve_in_root(root, pattern))
            except OSError as exc:
                notices.append(f"exec.deny {pattern}: not found in the container ({exc.strerror})")
                continue
            key = B.KillKey(cgid, st.st_ino, B.kernel_dev(st.st_dev), 0)
            self._obj.kill_put(key)
            keys.append(key)
            handled[(st.st_dev, st.st_ino)] = pattern
        self._obj.set_mode(cgid, kill=B.MODE_CODES[policy.mode])
        with self._lock:
            self._applied[target.id] = (cgid, policy, keys, handled)
        return set(handled), notices

    def remove(self, target_id: str) -> None:
        """Clear a target's kill set. Unknown ids are ignored."""
        with self._lock:
            entry = self._applied.pop(target_id, None)
        if entry is None:
            return
        cgid, _, keys, _ = entry
        self._obj.set_mode(cgid, kill=B.ENF_OFF)
        for key in keys:
            self._obj.kill_delete(key)

    def close(self) -> None:
        """Remove every target."""
        for target_id in list(self._applied):
            self.remove(target_id)

    def decision(self, rec: B.EnfRecord) -> Enforcement | None:
        """The decision for one kernel exec record (None if its policy is gone)."""
        with self._lock:
            found = [(tid, e) for tid, e in self._applied.items() if e[0] == rec.policy_cgid]
        if not found:
            return None
        target_id, (_, policy, _, handled) = found[0]
        pattern = next((p for (dev, ino), p in handled.items()
                        if ino == rec.ino and B.kernel_dev(dev) == rec.dev), "?")
        verdict: Verdict = "kill" if rec.verdict == B.V_KILL else "would_deny"
        reason = "exec of a denied executable, killed in the kernel" if verdict == "kill" else \
            "exec of a denied executable would be killed (monitor)"
        return Enforcement(
            time_ns=mono_to_wall_ns(rec.ts), layer="exec", verdict=verdict, policy_id=policy.id,
            rule=f"exec.deny:{pattern}", reason=reason, latency_ns=int(rec.latency_ns), mode=policy.mode,
            pid=int(rec.pid), target=pattern, container_id=target_id, cgroup_id=int(rec.cgid),
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

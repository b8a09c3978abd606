"""New containers held at their first exec until their policy is bound (``fail: closed``).

A policy set with an enforce-mode, ``fail: closed`` container policy must be in force
before a container's entrypoint runs its first instruction. Waiting for the pipeline to see
the cgroup's creation and the runtime's state file loses that race, so the kernel holds the
container instead (``enforce.bpf.c``: every cgroup created by a task inside the hold scope
is marked at ``cgroup_mkdir``; the first exec in a marked cgroup is stopped with SIGSTOP
before its first instruction and reported). :class:`HoldBinder` then, on its own thread:

1. binds the container's policy (:meth:`ContainerPolicyStage.bind_held`: selector from the
   runtime's state and the bundle's annotations; egress, files and exec applied; the
   cgroup's hold released);
2. judges the held program itself, whose exec passed before any exec check was in place:
   denied by the policy (a denied or unlisted program, the ELF loader run as a program) it
   is killed (enforce) or recorded as ``would_deny`` (monitor);
3. continues it (SIGCONT).

A cgroup that is no container, or that no policy selects, is released and continued at
once. Applying that fails under ``fail: closed`` kills the container (the stage does, and
records why). On :meth:`close` every task still stopped is continued: a clean stop leaves
nothing held.

Thread safety: :meth:`submit` may be called from any thread (the enforcement dispatcher);
held tasks are handled on a pool of :data:`BINDERS` threads (counters under a lock);
:meth:`close` from the owner.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runwatch.enrich.containers import parse_cgroup_path
from runwatch.enrich.runtime import RUNTIME_NAMES, runtime_binaries
from runwatch.host import procfs, runtimes
from runwatch.policy.apply import Bound, ContainerPolicyStage
from runwatch.policy.enforce import Enforcement, Enforcers, Hold, decision_event
from runwatch.policy.enforce.execrules import ExecIndex, literal_keys, stopped_loaders
from runwatch.policy.source import record_decision

Say = Callable[[str], None]


class HoldBinder:
    """Binds held containers' policies and continues or kills their first program; see the
    module docstring."""

    def __init__(self, stage: ContainerPolicyStage, enforcers: Enforcers, say: Say | None = None) -> None:
        self.stage = stage
        self.enforcers = enforcers
        self.say: Say = say or (lambda _line: None)
        self._queue: queue.Queue[Hold | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._scopes: list[int] = []
        self.counts = {"held": 0, "runtime": 0, "continued": 0, "killed": 0, "errors": 0}
        self._runtime_keys = runtime_binaries(_RUNTIMES)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=BINDERS, thread_name_prefix="runwatch-bind")
        self.max_hold_ms = 0.0

    def start(self, scope_cgid: int) -> HoldBinder:
        """Hold what tasks in cgroup ``scope_cgid`` create from now on (EnforcementError when the
        kernel part is unavailable)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="runwatch-holds", daemon=True)
            self._thread.start()
        self.enforcers.hold(scope_cgid, self.submit)
        self._scopes.append(scope_cgid)
        return self

    def submit(self, hold: Hold) -> None:
        """Queue one held task (called by the enforcers' dispatcher)."""
        self._queue.put(hold)

    def close(self) -> None:
        """Stop holding; continue every task still waiting. Idempotent."""
        for cgid in self._scopes:
            self.enforcers.unhold(cgid)
        if self._scopes:
            self.enforcers.stop_holding()  # from now on a held task is continued by the enforcers
        self._scopes.clear()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=PENDING_JOIN_S)
            self._thread = None
        while True:
            try:
                h = self._queue.get_nowait()
            except queue.Empty:
                break
            if h is not None:
                self.enforcers.release(h.cgroup_id)
                self._continue(h.pid)

    def _run(self) -> None:
        while True:
            h = self._queue.get()
            if h is None:
                self._pool.shutdown(wait=True)
                return
            self._count("held")
            self._pool.submit(self._handle, h)

    def _handle(self, h: Hold) -> None:
        """One held task, on a pool thread: one slow container (a runtime that is late with its
        state) never delays the others."""
        try:
            self._one(h)
        except Exception as exc:  # never leave a task stopped because of a bug here
            self._count("errors")
            self.say(f"held process {h.pid}: {type(exc).__name__}: {exc}")
            self.enforcers.release(h.cgroup_id)
            path = procfs.cgroup_path(h.pid)
            if path and parse_cgroup_path(path) is not None:
                self._kill(h.pid)  # a container: its policy may fail closed
            else:
                self._continue(h.pid)
        with self._lock:
            self.max_hold_ms = max(self.max_hold_ms, (time.time_ns() - h.time_ns) / 1e6)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _one(self, h: Hold) -> None:
        if self._is_runtime(h.pid):
            # The runtime re-executing itself inside the new cgroup (runc's init does, before
            # it writes its state): not the workload yet. The cgroup stays held.
            self._count("runtime")
            self._continue(h.pid)
            return
        bound = self.stage.bind_held(h.cgroup_id, h.pid)
        if bound is None:
            self._continue(h.pid)
            return
        denied = entry_verdict(bound, h.pid)
        if denied is None:
            self._continue(h.pid)
            return
        rule, path = denied
        policy = bound.policy
        enforce = policy.mode == "enforce"
        if enforce:
            self._kill(h.pid)
        else:
            self._continue(h.pid)
        what = "the container's first program is not allowed by the exec policy (it was executed before the " \
               "policy was bound)"
        record_decision(decision_event(Enforcement(
            time_ns=time.time_ns(), layer="exec", verdict="kill" if enforce else "would_deny", policy_id=policy.id,
            rule=rule, reason=f"{what}; {'killed before its first instruction' if enforce else 'would be killed'}",
            latency_ns=max(0, time.time_ns() - h.time_ns), mode=policy.mode, pid=h.pid, target=path,
            container_id=bound.container.id, cgroup_id=h.cgroup_id)))

    def _is_runtime(self, pid: int) -> bool:
        try:
            st = os.stat(f"/proc/{pid}/exe")
            path = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self._runtime_keys or path.startswith(_RUNTIME_MEMFDS)

    def _continue(self, pid: int) -> None:
        self._count("continued")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)

    def _kill(self, pid: int) -> None:
        self._count("killed")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def continue_stopped_containers() -> int:
    """SIGCONT every stopped task of the runtime's containers: what a crashed runwatch held at
    its first exec and can no longer continue (called once this run has bound its policies).
    A task stopped by job control inside a container is continued too. Returns how many."""
    n = 0
    for state in runtimes.runc_states():
        if state.cgroup_dir is None:
            continue
        try:
            pids = [int(p) for p in (Path(state.cgroup_dir) / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            continue
        for pid in pids:
            if procfs.state(pid) == "T":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                    n += 1
    return n


_RUNTIMES = (*RUNTIME_NAMES, "runsc")
"""OCI runtimes whose own init re-executes itself in a new container's cgroup."""
_RUNTIME_MEMFDS = ("/memfd:runc", "/memfd:crun")  # older runc and crun run a sealed copy of themselves

BINDERS = 8
"""Held tasks handled at once."""

PENDING_JOIN_S = 15.0
"""How long :meth:`HoldBinder.close` waits for the binder thread (a bind may wait for a runtime)."""


def entry_verdict(bound: Bound, pid: int) -> tuple[str, str] | None:
    """``(rule, path)`` when the program ``pid`` executed is denied by ``bound``'s exec rules
    (judged as the exec check would have judged it), else None."""
    rules = bound.policy.exec
    if rules is None:
        return None
    root = f"/proc/{pid}/root"
    try:
        st = os.stat(f"/proc/{pid}/exe")
        path = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None  # gone already
    key = (st.st_dev, st.st_ino)
    verdict, rule = ExecIndex.build(rules, root, []).verdict(path, key)
    if verdict == "deny":
        return rule, path
    for loader in stopped_loaders(rules):
        if key in literal_keys(root, (loader,), [], "loader"):
            return f"exec.loader:{loader}", path
    return None

"""The :class:`Enforcers` facade: one object that applies a policy's kernel parts to a container.

Lifecycle (ordered; teardown always runs): ``start()`` loads the BPF object (egress and
kill) and starts the fanotify responder and the dispatcher thread; ``apply(target, policy)``
per container; ``remove(target_id)`` when it goes; ``stop()``. If the BPF object cannot be
loaded, egress and kernel kills are unavailable (``problems`` says why): applying a policy
that needs them raises with ``fail: closed`` and returns a notice with ``fail: open``.

Decisions: the dispatcher thread drains the kernel's decision ring and the fanotify
responder's queue and calls ``on_decision`` with each :class:`Enforcement`, in arrival order
per source, never concurrently. A slow callback delays only other callbacks, never an
enforcement answer. Kernel records lost to a full ring are counted in :meth:`stats`.

Crash safety follows each policy's ``fail``. Links and fanotify marks belong to this
process; when it exits (even by SIGKILL) the kernel detaches the programs, drops the marks
and allows pending permission events: ``fail: open`` policies lift. For an enforce-mode
``fail: closed`` policy the links are pinned under bpffs (:mod:`runwatch.bpf.pins`) and a
heartbeat thread tells the kernel runwatch is alive; once it stops for 2 s, every task of
that policy's cgroups is killed at its next system call. :meth:`adopt` releases what a
crashed runwatch left pinned. A clean :meth:`stop` unpins everything.

Thread safety: ``apply``/``remove`` may be called from any thread.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runwatch.bpf.pins import StalePins, stale_dirs
from runwatch.policy.enforce import bpfobj as B
from runwatch.policy.enforce.egress import EgressEnforcer, Resolver, getaddrinfo_resolver
from runwatch.policy.enforce.fanotify import FanotifyEnforcer
from runwatch.policy.enforce.kill import KillEnforcer
from runwatch.policy.enforce.paths import target_cgroup
from runwatch.policy.enforce.spec import Enforcement, EnforcementError, Hold, Target, mono_to_wall_ns
from runwatch.policy.model import Policy

BEAT_S = 0.2
"""How often guarded policies hear that runwatch is alive (the kernel gives up after 2 s)."""


class Enforcers:
    """Egress, file/exec and kill enforcement behind one small API (see the module docstring)."""

    def __init__(self, on_decision: Callable[[Enforcement], None] | None = None, *,
                 resolver: Resolver = getaddrinfo_resolver, refresh_s: float = 60.0,
                 bpf_object: Path | None = None) -> None:
        self.on_decision = on_decision
        self.problems: list[str] = []
        self._resolver = resolver
        self._refresh_s = refresh_s
        self._bpf_path = bpf_object
        self._obj: B.EnforceObject | None = None
        self._egress: EgressEnforcer | None = None
        self._kill: KillEnforcer | None = None
        self._queue: queue.SimpleQueue[Enforcement] = queue.SimpleQueue()
        self._fan = FanotifyEnforcer(self._queue.put)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied: dict[str, Policy] = {}
        self._lock = threading.Lock()
        self.dispatched = 0
        self.callback_errors = 0
        self.holds = 0
        self.on_hold: Callable[[Hold], None] | None = None
        self._guarded: dict[str, tuple[int, Path]] = {}  # target id -> (cgroup id, dir)
        self._beater: threading.Thread | None = None

    def start(self) -> Enforcers:
        """Load and start everything available; returns self."""
        try:
            self._obj = B.EnforceObject(self._bpf_path)
        except EnforcementError as exc:
            self.problems.append(f"egress and kernel kill unavailable: {exc}")
        if self._obj is not None:
            self._egress = EgressEnforcer(self._obj, self._resolver)
            self._kill = KillEnforcer(self._obj)
            if self._obj.exec_problem:
                self.problems.append(f"kernel kill unavailable: {self._obj.exec_problem}")
        self._fan.start()
        self._thread = threading.Thread(target=self._dispatch, name="runwatch-enforce", daemon=True)
        self._thread.start()
        return self

    def apply(self, target: Target, policy: Policy) -> list[str]:
        """Enforce (or monitor) ``policy`` on ``target``, replacing what was there.

        Returns notices (rules that could not be placed exactly). Raises
        :class:`EnforcementError` (one line) when the policy cannot be applied and its
        ``fail`` is ``closed``, and (whatever ``fail`` says) when a ``files`` target cannot be
        marked (the message names the policy file and line); whatever was applied for this
        target is removed first.
        """
        notices: list[str] = []
        try:
            if policy.egress is not None:
                if self._egress is None:
                    self._unavailable(policy, "egress", notices)
                else:
                    self._egress.apply(target, policy)
            elif self._egress is not None:
                self._egress.remove(target.id)
            handled: set[tuple[int, int]] = set()
            if self._kill is not None:
                handled, more = self._kill.apply(target, policy)
                notices.extend(more)
            elif policy.exec is not None and policy.exec.action == "kill":
                notices.append("kernel kill unavailable: denied execs are refused and killed from userspace")
            notices.extend(self._fan.apply(target, policy, kill_handled=handled))
        except (EnforcementError, OSError) as exc:
            self.remove(target.id)
            if isinstance(exc, EnforcementError):
                raise
            raise EnforcementError(f"applying policy {policy.id} to {target.id}: {exc}") from exc
        try:
            self._guard(target, policy)
        except EnforcementError:
            self.remove(target.id)
            raise
        with self._lock:
            self._applied[target.id] = policy
        return notices

    def _guard(self, target: Target, policy: Policy) -> None:
        """An enforce-mode ``fail: closed`` policy stays in force if runwatch dies (pinned links,
        tasks killed once the heartbeat stops); any other policy goes with the process."""
        if self._obj is None:
            return
        if policy.mode != "enforce" or policy.fail != "closed":
            self._unguard(target.id)
            return
        try:
            cgroup = target_cgroup(target.cgroup_dir)
        except ValueError as exc:
            raise EnforcementError(str(exc)) from exc
        self._obj.guard(target.cgroup_id, target.cgroup_dir, cgroup)
        with self._lock:
            self._guarded[target.id] = (target.cgroup_id, target.cgroup_dir)
        self._start_beating()

    def _start_beating(self) -> None:
        with self._lock:
            if self._obj is not None:
                self._obj.beat()
            if self._beater is None:
                self._beater = threading.Thread(target=self._beat, name="runwatch-heartbeat", daemon=True)
                self._beater.start()

    def _unguard(self, target_id: str) -> None:
        with self._lock:
            entry = self._guarded.pop(target_id, None)
        if entry is not None and self._obj is not None:
            self._obj.unguard(*entry)

    def _beat(self) -> None:
        """Heartbeat for guarded policies, on its own thread so nothing slow can delay it."""
        while not self._stop.wait(BEAT_S):
            obj = self._obj
            if obj is not None:
                obj.beat()

    def adopt(self) -> list[StalePins]:
        """Release what a crashed runwatch left pinned (call after this run applied its own
        policies: its cgroups are then governed by this run, or by nothing). Returns what was
        released."""
        found = stale_dirs()
        for stale in found:
            stale.release()
        return found

    def remove(self, target_id: str) -> None:
        """Stop enforcing on a target (links detached, map entries and marks dropped)."""
        self._unguard(target_id)
        if self._egress is not None:
            self._egress.remove(target_id)
        if self._kill is not None:
            self._kill.remove(target_id)
        self._fan.remove(target_id)
        with self._lock:
            self._applied.pop(target_id, None)

    def learn_dns(self, name: str, addresses: list[str]) -> int:
        """Feed a DNS answer (name -> addresses) to host-name egress rules; see :class:`EgressEnforcer`."""
        return self._egress.learn(name, addresses) if self._egress is not None else 0

    def applied(self) -> dict[str, str]:
        """target id -> policy id for every target under enforcement."""
        with self._lock:
            return {t: p.id for t, p in self._applied.items()}

    def stats(self) -> dict[str, Any]:
        """Counters: decisions dispatched, callback errors, kernel records lost, fanotify answers and
        rescans (a container's mount table changed and its file targets were marked again)."""
        return {"dispatched": self.dispatched, "callback_errors": self.callback_errors,
                "lost": self._obj.lost() if self._obj is not None else 0, "fanotify_answered": self._fan.answered,
                "fanotify_rescans": self._fan.rescans, "holds": self.holds, "problems": list(self.problems)}

    def stop(self) -> None:
        """Remove every target, stop the threads, unload BPF. Idempotent."""
        for target_id in list(self._applied):
            with contextlib.suppress(Exception):
                self.remove(target_id)
        self._fan.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._beater is not None:
            self._beater.join(timeout=5)
            self._beater = None
        self.on_hold = None  # tasks held from now on are continued at once
        self._flush()
        if self._egress is not None:
            self._egress.close()
        if self._kill is not None:
            self._kill.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Enforcers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _unavailable(self, policy: Policy, what: str, notices: list[str]) -> None:
        why = "; ".join(self.problems) or "not started"
        if policy.fail == "closed":
            raise EnforcementError(f"policy {policy.id} needs {what} enforcement (fail: closed): {why}")
        notices.append(f"{what} not enforced (fail: open): {why}")

    def _dispatch(self) -> None:
        last_refresh = time.monotonic()
        while not self._stop.is_set():
            if self._obj is not None:
                self._obj.ring.wait(0.05)
            else:
                self._stop.wait(0.05)
            self._flush()
            if self._egress is not None and time.monotonic() - last_refresh > self._refresh_s:
                last_refresh = time.monotonic()
                with contextlib.suppress(EnforcementError):
                    self._egress.refresh()

    def hold(self, scope_cgid: int, on_hold: Callable[[Hold], None]) -> None:
        """Hold every cgroup that tasks in cgroup ``scope_cgid`` (or below) create from now on:
        the first exec in it is stopped and passed to ``on_hold`` (on the dispatcher thread;
        keep it short) until :meth:`release` of that cgroup. Raises EnforcementError when
        the kernel part is unavailable."""
        if self._obj is None:
            raise EnforcementError("holding new cgroups needs the enforcement programs: " +
                                   ("; ".join(self.problems) or "not started"))
        if not self._obj.exec_link:
            raise EnforcementError(f"holding new cgroups needs the exec hook: {self._obj.exec_problem}")
        self.on_hold = on_hold
        self._obj.hold_scope_add(scope_cgid)
        self._start_beating()  # the kernel holds only while runwatch beats

    def unhold(self, scope_cgid: int) -> None:
        """Stop holding the cgroups ``scope_cgid`` creates (held ones stay until released)."""
        if self._obj is not None:
            self._obj.hold_scope_remove(scope_cgid)

    def stop_holding(self) -> None:
        """Nothing binds held cgroups any more: release every one, and continue at once any
        task still reported held (instead of passing it to ``on_hold``)."""
        self.on_hold = None
        if self._obj is not None:
            self._obj.release_all()

    def is_held(self, cgid: int) -> bool:
        """Whether cgroup ``cgid`` is held (its first exec would stop)."""
        return self._obj is not None and self._obj.is_held(cgid)

    def release(self, cgid: int) -> None:
        """Let execs in cgroup ``cgid`` run from now on (tasks already stopped need SIGCONT)."""
        if self._obj is not None:
            self._obj.release(cgid)

    def _held(self, rec: B.EnfRecord) -> None:
        h = Hold(pid=int(rec.pid), cgroup_id=int(rec.policy_cgid), ino=int(rec.ino), dev=int(rec.dev),
                 time_ns=mono_to_wall_ns(rec.ts))
        self.holds += 1
        if self.on_hold is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(h.pid, signal.SIGCONT)  # nobody binds it: never leave a task stopped
            return
        try:
            self.on_hold(h)
        except Exception:
            self.callback_errors += 1

    def _flush(self) -> None:
        out: list[Enforcement] = []
        if self._obj is not None:
            for rec in self._obj.drain():
                d = None
                if rec.hook == B.HOOK_HOLD:
                    self._held(rec)
                elif rec.hook in (B.HOOK_EXEC, B.HOOK_MAP_EXEC):
                    d = self._kill.decision(rec) if self._kill is not None else None
                elif self._egress is not None:
                    d = self._egress.decision(rec)
                if d is not None:
                    out.append(d)
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for d in out:
            self.dispatched += 1
            if self.on_decision is not None:
                try:
                    self.on_decision(d)
                except Exception:
                    self.callback_errors += 1

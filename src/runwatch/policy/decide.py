"""Request-time decisions: may this workload run this tool now?

:class:`Decider` selects the workload's policy, applies the tool rules (deny, then
challenge, then allow; unlisted tools are denied when an allow list exists), applies the
mode (monitor: a deny is returned as allow and recorded as ``would_deny``; a challenge as
allow recorded ``would_challenge``) and records every decision as a ``policy.decision``
event through ``emit`` (default :func:`runwatch.policy.source.record_decision`). A
challenge is returned at once with its id; the caller then waits with
:meth:`Decider.await_challenge`, and the approve / reject / timeout is recorded as one more
decision event when it happens. :meth:`Decider.answer` takes an approve / reject from the
control socket's peer and refuses it when that peer is the asking workload itself.

A workload without a selecting policy is allowed and not recorded (no policy decided).

Thread safety: ``decide`` and every other method may run concurrently from any thread;
``policies`` may be replaced at any time (:meth:`Decider.set_policies`, an atomic swap).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec

from runwatch.events import AiInfo, Container, DecisionInfo, Event, ToolCall
from runwatch.policy.challenges import PENDING, AnswerRefused, Challenge, ChallengeBook, ChallengeError
from runwatch.policy.model import Policy, PolicySet, Workload
from runwatch.policy.peers import Peer, Requester, refusal, same_container
from runwatch.policy.source import decision_event, record_decision


class Decision(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer to one request.

    ``verdict`` is what the caller must do: ``allow``, ``deny`` or ``challenge`` (wait for
    ``challenge_id``). ``recorded`` is the verdict as recorded (adds would_deny,
    would_challenge, approve, reject, timeout). ``latency_ns`` is the decision's own time.
    """

    verdict: str
    recorded: str
    policy: str | None = None
    rule: str | None = None
    reason: str = ""
    latency_ns: int = 0
    mode: str | None = None
    fail: str | None = None
    challenge_id: str | None = None
    timeout_s: float | None = None

    @property
    def allowed(self) -> bool:
        """Whether the tool may run now."""
        return self.verdict == "allow"

    def to_wire(self) -> dict[str, Any]:
        """The JSON object ``POST /v1/decide`` answers with."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class ProcWorkloads:
    """Workload of a live pid: its executable (``/proc/PID/exe``) and container (cgroup), with the
    container's workload facts and SPIFFE id when ``workload`` (the session's join) is given.

    The container resolver is created on first use; without a cgroup v2 hierarchy every
    process counts as a host process. Thread safe (the resolver locks internally).
    """

    def __init__(self, proc_root: str = "/proc", workload: Callable[[Container], Container] | None = None) -> None:
        self.proc_root = proc_root
        self.workload = workload  # the session's workload join: Kubernetes facts, derived or attested SPIFFE id
        self._resolver: Any = None

    def __call__(self, pid: int, agent: str | None = None) -> Workload:
        try:
            exe: str | None = os.readlink(f"{self.proc_root}/{pid}/exe")
        except OSError:
            exe = None
        container: Container | None = None
        try:
            if self._resolver is None:
                from runwatch.enrich.containers import ContainerResolver

                self._resolver = ContainerResolver(proc_root=self.proc_root)
            container = self._resolver.resolve_pid(pid)
            if container is not None and self.workload is not None:
                container = self.workload(container)
        except Exception:  # attribution problems make a host workload, never a failed decision
            container = None
        return Workload(container=container, exe=exe, pid=pid, agent=agent)


MAX_ADMISSIONS = 4096
"""Decided tool calls remembered for :meth:`Decider.admission` (oldest forgotten first)."""


class Decider:
    """Tool-call decisions over ``policies``; challenges are held in ``challenges``.

    ``emit`` receives every decision event (default: the process-wide decision bus).
    ``workloads`` maps a pid to its :class:`Workload` (default :class:`ProcWorkloads`).
    The last decision of each call is kept, by (pid, call id or tool name), until
    :meth:`admission` takes it: the SDK sends a call's ``tool.start`` only after its decision,
    so the pipeline finds there what admitted the call. Thread safe (the server decides on
    its threads, the pipeline asks on its own).
    """

    def __init__(self, policies: PolicySet, challenges: ChallengeBook | None = None, *,
                 emit: Callable[[Event], None] = record_decision,
                 workloads: Callable[[int, str | None], Workload] | None = None) -> None:
        self.policies = policies
        self.challenges = challenges if challenges is not None else ChallengeBook()
        if self.challenges.on_resolve is None:
            self.challenges.on_resolve = self._on_resolve
        self.emit = emit
        self.workloads = workloads if workloads is not None else ProcWorkloads()
        self.counts: dict[str, int] = {}
        self._admissions: OrderedDict[tuple[int, str], DecisionInfo] = OrderedDict()
        self._admissions_lock = threading.Lock()

    def admission(self, pid: int, call_id: str | None, tool: str) -> DecisionInfo | None:
        """The last decision on the call ``call_id`` (else on tool ``tool``) of process ``pid``, once."""
        with self._admissions_lock:
            return self._admissions.pop((pid, call_id or tool), None)

    def _admit(self, pid: int, call_id: str | None, tool: str, info: DecisionInfo) -> None:
        with self._admissions_lock:
            key = (pid, call_id or tool)
            self._admissions[key] = info
            self._admissions.move_to_end(key)
            while len(self._admissions) > MAX_ADMISSIONS:
                self._admissions.popitem(last=False)

    def set_policies(self, policies: PolicySet) -> None:
        """Use ``policies`` for every later decision."""
        self.policies = policies

    def workload_of(self, pid: int, agent: str | None = None) -> Workload:
        """The workload of a live process."""
        return self.workloads(pid, agent)

    def decide(self, workload: Workload, tool_name: str, args_digest: str | None = None, *,
               call_id: str | None = None, requester: Requester | None = None) -> Decision:
        """Decide whether ``workload`` may run tool ``tool_name`` now (see the module docstring).

        ``requester`` is the asking process as the kernel named it (None when unproven, e.g.
        over TCP); a challenge keeps it so that process cannot answer its own challenge."""
        t0 = time.perf_counter_ns()
        policy = self.policies.select(workload)
        if policy is None:
            return Decision(verdict="allow", recorded="allow", rule="no_policy",
                            reason="no policy selects this workload", latency_ns=time.perf_counter_ns() - t0)
        verdict, rule = policy.tool_verdict(tool_name)
        monitor = policy.mode == "monitor"
        cid: str | None = None
        timeout_s: float | None = None
        if verdict == "allow":
            returned, recorded = "allow", "allow"
            reason = f"tool {tool_name!r} is allowed ({rule})"
        elif verdict == "deny":
            returned, recorded = ("allow", "would_deny") if monitor else ("deny", "deny")
            reason = (f"tool {tool_name!r} is not in the allow list" if rule == "tools.default"
                      else f"tool {tool_name!r} is denied ({rule})")
        else:
            reason = f"tool {tool_name!r} needs approval ({rule})"
            if monitor:
                returned, recorded = "allow", "would_challenge"
            else:
                returned, recorded = "challenge", "challenge"
                ch = self.challenges.open(policy_id=policy.id, tool=tool_name, rule=rule, fail=policy.fail,
                                          workload=workload, timeout_ns=policy.challenge_timeout_ns,
                                          call_id=call_id, args_digest=args_digest, mode=policy.mode,
                                          requester=requester)
                cid, timeout_s = ch.id, policy.challenge_timeout_ns / 1e9
                reason += f"; waiting up to {timeout_s:g}s for `runwatch approve {cid}` (fail {policy.fail})"
        latency = time.perf_counter_ns() - t0
        self._record(policy, workload, tool_name, call_id, args_digest, recorded, rule, reason, latency, cid)
        return Decision(verdict=returned, recorded=recorded, policy=policy.id, rule=rule, reason=reason,
                        latency_ns=latency, mode=policy.mode, fail=policy.fail, challenge_id=cid,
                        timeout_s=timeout_s)

    def await_challenge(self, challenge_id: str, wait_s: float | None = None) -> Decision:
        """Wait for a challenge (at most ``wait_s`` s, default until its own deadline) and return
        the final decision: ``allow``/``deny`` once resolved, ``challenge`` while still pending.
        Raises :class:`~runwatch.policy.challenges.ChallengeError` for an unknown id."""
        ch = self.challenges.wait(challenge_id, wait_s)
        return self._challenge_decision(ch)

    def answer(self, challenge_id: str, verb: str, peer: Peer | None, note: str | None = None) -> Challenge:
        """Approve (``verb`` ``approve``) or reject challenge ``challenge_id`` as ``peer``, the
        control socket's peer; ``note`` is free text kept with the answer, never an identity.

        Raises :class:`~runwatch.policy.challenges.AnswerRefused` when the peer is unknown or is
        the asking workload (:func:`~runwatch.policy.peers.refusal`, or it runs in the challenged
        container): the refusal is counted as ``answer_refused``, kept on the challenge, and the
        challenge stays pending. Raises ``ChallengeError`` for an unknown or resolved id."""
        book = self.challenges
        ch = book.get(challenge_id)
        if ch is None:
            raise ChallengeError(f"no challenge {challenge_id!r}")
        if ch.state == PENDING:
            why = self._refusal(ch, peer)
            if why is not None:
                self.counts["answer_refused"] = self.counts.get("answer_refused", 0) + 1
                if peer is not None:
                    book.refuse(ch, peer, verb, why)
                raise AnswerRefused(why)
        return (book.approve if verb == "approve" else book.reject)(challenge_id, approver=peer, note=note)

    def _refusal(self, ch: Challenge, peer: Peer | None) -> str | None:
        if peer is None:
            return f"the process answering challenge {ch.id} cannot be identified (no peer pid)"
        why = refusal(peer, ch.requester or Requester(), ch.id)
        asked = ch.workload.container
        if why is None and asked is not None:
            mine = self.workload_of(peer.pid).container
            if mine is not None and same_container(mine, asked):
                why = f"pid {peer.pid} may not answer challenge {ch.id}: it runs in the asking container " + (
                    asked.name or asked.id)
        return why

    def challenge_decision(self, challenge_id: str) -> Decision | None:
        """The current decision of a challenge without waiting (None: unknown id)."""
        ch = self.challenges.get(challenge_id)
        return None if ch is None else self._challenge_decision(ch)

    @staticmethod
    def _challenge_decision(ch: Challenge) -> Decision:
        if ch.state == PENDING:
            left = max(0.0, (ch.deadline_ns - time.monotonic_ns()) / 1e9)
            return Decision(verdict="challenge", recorded="challenge", policy=ch.policy_id, rule=ch.rule,
                            reason=f"waiting for approval ({left:.1f}s left)", mode=ch.mode, fail=ch.fail,
                            challenge_id=ch.id, timeout_s=left)
        outcome = ch.outcome or "deny"
        return Decision(verdict=outcome, recorded=ch.state, policy=ch.policy_id, rule=ch.rule,
                        reason=_resolution_reason(ch), latency_ns=(ch.resolved_ns or ch.created_ns) - ch.created_ns,
                        mode=ch.mode, fail=ch.fail, challenge_id=ch.id)

    def _on_resolve(self, ch: Challenge) -> None:
        policy = self.policies.get(ch.policy_id)
        latency = (ch.resolved_ns or ch.created_ns) - ch.created_ns
        self._record(policy, ch.workload, ch.tool, ch.call_id, ch.args_digest, ch.state, ch.rule,
                     _resolution_reason(ch), latency, ch.id, policy_id=ch.policy_id, mode=ch.mode)

    def _record(self, policy: Policy | None, w: Workload, tool: str, call_id: str | None, digest: str | None,
                recorded: str, rule: str, reason: str, latency: int, cid: str | None, *,
                policy_id: str | None = None, mode: str | None = None) -> None:
        self.counts[recorded] = self.counts.get(recorded, 0) + 1
        policy_id = policy.id if policy is not None else (policy_id or "")
        mode = policy.mode if policy is not None else mode
        self._admit(w.pid or 0, call_id, tool, DecisionInfo(policy=policy_id, verdict=recorded, rule=rule, mode=mode,
                                                            target=tool, layer="tool"))
        try:
            self.emit(decision_event(
                policy=policy_id, verdict=recorded, rule=rule,
                reason=reason, latency_ns=latency, mode=mode, target=tool,
                layer="tool", pid=w.pid or 0, exe=w.exe or "", container=w.container,
                tool_call=ToolCall(name=tool, call_id=call_id, agent=w.agent), challenge_id=cid,
                ai=AiInfo(args_digest=digest) if digest else None))
        except Exception:  # recording must never turn a decision into an error
            self.counts["emit_errors"] = self.counts.get("emit_errors", 0) + 1


def _resolution_reason(ch: Challenge) -> str:
    if ch.state in ("approve", "reject"):
        by = f" by {ch.by}" if ch.by else ""
        note = f"; note {ch.note!r}" if ch.note else ""
        return f"{'approved' if ch.state == 'approve' else 'rejected'}{by}{note}"
    return f"no answer before the timeout; fail {ch.fail} -> {ch.outcome}"

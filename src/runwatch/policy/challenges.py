"""Challenges: a tool call held until a person approves or rejects it, or it times out.

A challenge is opened by the decider; the caller then waits (:meth:`ChallengeBook.wait`)
while an operator answers with :meth:`ChallengeBook.approve` / :meth:`ChallengeBook.reject`
(``runwatch approve ID`` reaches them over the control socket). Who answered is the
control socket's peer (:class:`~runwatch.policy.peers.Peer`, from the kernel), kept as
``approver``; what the answer says about itself is only a ``note``. Answers the asking
workload tried to give itself are refused by the decider and kept in ``refused``. At its deadline an
unanswered challenge resolves as ``timeout``, whose outcome follows the policy's ``fail``
(open -> allow, closed -> deny). Timeouts are applied by whoever looks first: a waiter at its
deadline, :meth:`ChallengeBook.expire_due` (polled by the decision source) or any lookup.

Thread safety: every method may be called from any thread; one lock guards the book and
one condition wakes waiters. ``on_resolve`` runs outside the lock, once per challenge, in
the thread that resolved it, before its waiters wake.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runwatch.policy.model import Workload
from runwatch.policy.peers import Peer, Requester

PENDING = "pending"
_RECORD_WAIT_S = 5.0
RESOLUTIONS = ("approve", "reject", "timeout")
MAX_REFUSED = 16
"""Refused answers kept per challenge (later ones are only counted)."""
MAX_NOTE = 200
"""Characters of an answer's note that are kept."""


class ChallengeError(Exception):
    """An unknown challenge id, or one already resolved (the message says which)."""


class AnswerRefused(ChallengeError):
    """An answer from a process that may not give it (the message says why)."""


@dataclass
class Challenge:
    """One held tool call. Times are CLOCK_MONOTONIC ns; ``state`` is pending, approve,
    reject or timeout. ``requester`` is the asking process (None: not known, e.g. a direct
    call). Only ``state``, ``resolved_ns``, ``approver``, ``note`` and ``refused`` change, under
    the book's lock."""

    id: str
    policy_id: str
    tool: str
    rule: str
    fail: str  # open | closed
    workload: Workload
    created_ns: int
    deadline_ns: int
    created_wall_ns: int
    call_id: str | None = None
    args_digest: str | None = None
    mode: str = "enforce"
    state: str = PENDING
    resolved_ns: int | None = None
    requester: Requester | None = None
    approver: Peer | None = None
    note: str | None = None
    refused: list[dict[str, object]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def by(self) -> str | None:
        """Who answered, from the approver's credentials (None for a timeout or an unknown peer)."""
        return self.approver.describe() if self.approver is not None else None

    @property
    def outcome(self) -> str | None:
        """``allow`` or ``deny`` once resolved (timeout follows ``fail``); None while pending."""
        if self.state == "approve":
            return "allow"
        if self.state == "reject":
            return "deny"
        if self.state == "timeout":
            return "allow" if self.fail == "open" else "deny"
        return None

    def to_dict(self) -> dict[str, object]:
        """JSON-able view (for the HTTP API and ``runwatch challenges``)."""
        w = self.workload
        now = time.monotonic_ns()
        return {
            "id": self.id, "policy": self.policy_id, "tool": self.tool, "rule": self.rule, "state": self.state,
            "outcome": self.outcome, "fail": self.fail, "call_id": self.call_id, "agent": w.agent, "pid": w.pid,
            "exe": w.exe, "container": (w.container.name or w.container.id) if w.container else None,
            "created": self.created_wall_ns, "expires_in_s": max(0.0, (self.deadline_ns - now) / 1e9),
            "by": self.by, "approver": self.approver.to_dict() if self.approver else None, "note": self.note,
            "requester": self.requester.to_dict() if self.requester else None, "refused": list(self.refused),
        }


class ChallengeBook:
    """Open and resolved challenges (resolved ones are kept, up to ``keep``, for late waiters)."""

    def __init__(self, on_resolve: Callable[[Challenge], None] | None = None, keep: int = 4096) -> None:
        self.on_resolve = on_resolve
        self._lock = threading.Lock()
        self._pending: dict[str, Challenge] = {}
        self._resolved: collections.OrderedDict[str, Challenge] = collections.OrderedDict()
        self._keep = keep

    def open(self, *, policy_id: str, tool: str, rule: str, fail: str, workload: Workload, timeout_ns: int,
             call_id: str | None = None, args_digest: str | None = None, mode: str = "enforce",
             requester: Requester | None = None) -> Challenge:
        """Open a challenge that times out ``timeout_ns`` from now, asked by ``requester``."""
        now = time.monotonic_ns()
        with self._lock:
            cid = secrets.token_hex(4)
            while cid in self._pending or cid in self._resolved:
                cid = secrets.token_hex(4)
            ch = Challenge(cid, policy_id, tool, rule, fail, workload, now, now + timeout_ns, time.time_ns(),
                           call_id, args_digest, mode, requester=requester)
            self._pending[cid] = ch
        return ch

    def _resolve(self, ch: Challenge, state: str, approver: Peer | None = None, note: str | None = None) -> None:
        """Mark ``ch`` resolved; caller holds the lock and calls :meth:`_notify` after releasing it."""
        ch.state, ch.approver, ch.note, ch.resolved_ns = state, approver, note, time.monotonic_ns()
        self._pending.pop(ch.id, None)
        self._resolved[ch.id] = ch
        while len(self._resolved) > self._keep:
            self._resolved.popitem(last=False)

    def _notify(self, resolved: list[Challenge]) -> None:
        # The outcome is recorded before its waiter is woken, so a decision event never
        # trails what the released caller does next.
        for ch in resolved:
            try:
                if self.on_resolve is not None:
                    self.on_resolve(ch)
            finally:
                ch.done.set()

    def _answer(self, cid: str, state: str, approver: Peer | None, note: str | None) -> Challenge:
        expired = self._collect_due()
        with self._lock:
            ch = self._pending.get(cid)
            if ch is None:
                old = self._resolved.get(cid)
                err = (f"challenge {cid} was already resolved: {old.state}" if old is not None
                       else f"no challenge {cid!r}")
            else:
                self._resolve(ch, state, approver, _clean_note(note))
        self._notify(expired)
        if ch is None:
            raise ChallengeError(err)
        self._notify([ch])
        return ch

    def approve(self, cid: str, *, approver: Peer | None = None, note: str | None = None) -> Challenge:
        """Approve a pending challenge; raises :class:`ChallengeError` if unknown or resolved."""
        return self._answer(cid, "approve", approver, note)

    def reject(self, cid: str, *, approver: Peer | None = None, note: str | None = None) -> Challenge:
        """Reject a pending challenge; raises :class:`ChallengeError` if unknown or resolved."""
        return self._answer(cid, "reject", approver, note)

    def refuse(self, ch: Challenge, peer: Peer, verb: str, reason: str) -> None:
        """Keep a refused answer on ``ch`` (the first :data:`MAX_REFUSED`); it stays pending."""
        with self._lock:
            if len(ch.refused) < MAX_REFUSED:
                ch.refused.append({**peer.to_dict(), "verb": verb, "reason": reason})

    def get(self, cid: str) -> Challenge | None:
        """A challenge by id (pending or recently resolved), after applying due timeouts."""
        self.expire_due()
        with self._lock:
            return self._pending.get(cid) or self._resolved.get(cid)

    def wait(self, cid: str, timeout_s: float | None = None) -> Challenge:
        """Block until challenge ``cid`` is resolved, its deadline passes (it then times out) or
        ``timeout_s`` elapses (it may still be pending then). Raises ChallengeError if unknown."""
        ch = self.get(cid)
        if ch is None:
            raise ChallengeError(f"no challenge {cid!r}")
        limit = None if timeout_s is None else time.monotonic_ns() + int(timeout_s * 1e9)
        while ch.state == PENDING:
            until = ch.deadline_ns if limit is None else min(ch.deadline_ns, limit)
            left = (until - time.monotonic_ns()) / 1e9
            if left > 0:
                ch.done.wait(left)
                continue
            if time.monotonic_ns() >= ch.deadline_ns:
                self.expire_due()
            break
        if ch.state != PENDING:
            ch.done.wait(_RECORD_WAIT_S)  # resolved by another thread that is still recording it
        return ch

    def _collect_due(self) -> list[Challenge]:
        now = time.monotonic_ns()
        with self._lock:
            due = [ch for ch in self._pending.values() if ch.deadline_ns <= now]
            for ch in due:
                self._resolve(ch, "timeout")
        return due

    def expire_due(self) -> int:
        """Time out every pending challenge past its deadline; returns how many."""
        due = self._collect_due()
        self._notify(due)
        return len(due)

    def pending(self) -> list[Challenge]:
        """Pending challenges, oldest first (after applying due timeouts)."""
        self.expire_due()
        with self._lock:
            return sorted(self._pending.values(), key=lambda c: c.created_ns)


def _clean_note(note: str | None) -> str | None:
    """A note as one line of at most :data:`MAX_NOTE` characters (None when empty)."""
    if note is None:
        return None
    text = " ".join(note.split())[:MAX_NOTE]
    return text or None

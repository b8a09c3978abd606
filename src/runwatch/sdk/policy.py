"""Request-time policy decisions for agents: ``decide()`` and the check inside ``tool_call``.

Stdlib only. Active when ``RUNWATCH_POLICY_SOCKET`` names runwatch's decide socket (or after
:func:`configure`); then every ``tool_call`` asks before its body runs and raises
:class:`ToolDenied` on deny, so a denied tool never runs.

    from runwatch import sdk
    d = sdk.decide("send_email", {"to": "x@example.com"})
    if d.allowed: ...

Transport: HTTP/1.1 with keep-alive over the unix socket, one connection per thread (reset
after fork). A plain decision is one request (well under a millisecond); a challenge is a
second, long-polling request that returns when an operator answers or the challenge times out.

When runwatch cannot be reached (no socket, refused, timeout, bad answer) the outcome
follows ``fail``: the value the server sent with its last answer (the policy's ``fail``),
else ``RUNWATCH_POLICY_FAIL`` (``open`` or ``closed``), else ``closed``. Such a decision
has ``source == "local"``.

Tool arguments never leave the process: only their keyed digest is sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from typing import Any

ENV_POLICY_SOCKET = "RUNWATCH_POLICY_SOCKET"
ENV_POLICY_FAIL = "RUNWATCH_POLICY_FAIL"
ENV_POLICY_TIMEOUT = "RUNWATCH_POLICY_TIMEOUT"
DEFAULT_TIMEOUT_S = 2.0
"""Budget (s) for one plain decision request, connect included."""

__all__ = ["ENV_POLICY_SOCKET", "Decision", "PolicyClient", "ToolDenied", "configure", "decide", "policy_active"]


class Decision:
    """A decision as the agent sees it. ``verdict``: allow or deny (challenges are waited out);
    ``recorded``: what runwatch recorded (allow, deny, approve, reject, timeout, would_deny, ...)."""

    __slots__ = ("challenge_id", "policy", "reason", "recorded", "rule", "source", "verdict")

    def __init__(self, verdict: str, recorded: str | None = None, policy: str | None = None, rule: str | None = None,
                 reason: str = "", challenge_id: str | None = None, source: str = "runwatch") -> None:
        self.verdict, self.recorded = verdict, recorded or verdict
        self.policy, self.rule, self.reason = policy, rule, reason
        self.challenge_id, self.source = challenge_id, source

    @property
    def allowed(self) -> bool:
        """Whether the tool may run."""
        return self.verdict == "allow"

    def __repr__(self) -> str:
        return (f"Decision(verdict={self.verdict!r}, recorded={self.recorded!r}, policy={self.policy!r}, "
                f"rule={self.rule!r}, challenge_id={self.challenge_id!r}, source={self.source!r})")


class ToolDenied(PermissionError):
    """Raised by ``tool_call`` (before the tool's body runs) when policy denies the call."""

    def __init__(self, tool: str, decision: Decision) -> None:
        by = f"policy {decision.policy!r}" if decision.policy else "policy"
        rule = f" ({decision.rule})" if decision.rule else ""
        super().__init__(f"tool {tool!r} denied by {by}{rule}: {decision.reason}")
        self.tool = tool
        self.decision = decision


class _Unreachable(Exception):
    """runwatch did not answer usably (the message says why)."""


class _Conn:
    """One keep-alive HTTP connection over a unix stream socket (not thread safe)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock, self.buf = None, b""

    def request(self, method: str, target: str, body: bytes | None, timeout: float) -> tuple[int, Any]:
        """One request/response; raises OSError or _Unreachable."""
        if self.sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(self.path)
            except OSError:
                s.close()
                raise
            self.sock = s
        self.sock.settimeout(timeout)
        head = f"{method} {target} HTTP/1.1\r\nHost: runwatch\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + (body or b""))
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw_head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise _Unreachable(f"bad status line {lines[0]!r}")
        length, closing = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                closing = True
        self.buf = rest
        while len(self.buf) < length:
            self._fill()
        payload, self.buf = self.buf[:length], self.buf[length:]
        if closing:
            self.close()
        try:
            return int(parts[1]), json.loads(payload) if payload else {}
        except ValueError as exc:
            raise _Unreachable(f"answer is not JSON: {exc}") from None

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Unreachable("connection closed by runwatch")
        self.buf += chunk


class PolicyClient:
    """Client of the decide socket: per-thread keep-alive connections. Thread safe."""

    def __init__(self, path: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _conn(self) -> _Conn:
        conn: _Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Conn(self.path)
            self._local.conn = conn
        return conn

    def request(self, method: str, target: str, obj: Any = None, timeout: float | None = None) -> tuple[int, Any]:
        """Send one JSON request; a stale keep-alive connection is retried once on a fresh one.

        Raises :class:`OSError` or ``_Unreachable`` when runwatch does not answer."""
        body = None if obj is None else json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        conn = self._conn()
        fresh = conn.sock is None
        try:
            return conn.request(method, target, body, timeout or self.timeout_s)
        except (OSError, _Unreachable):
            conn.close()
            if fresh:
                raise
        return conn.request(method, target, body, timeout or self.timeout_s)


class _State:
    """Process-wide settings (re-created after fork so no connection is shared with the parent)."""

    def __init__(self, path: str | None, fail: str | None) -> None:
        self.path = path or None
        env_fail = os.environ.get(ENV_POLICY_FAIL, "closed")
        self.fail = fail or (env_fail if env_fail in ("open", "closed") else "closed")
        try:
            timeout = float(os.environ.get(ENV_POLICY_TIMEOUT, DEFAULT_TIMEOUT_S))
        except ValueError:
            timeout = DEFAULT_TIMEOUT_S
        self.client = PolicyClient(self.path, timeout) if self.path else None


_state = _State(os.environ.get(ENV_POLICY_SOCKET), None)


def _after_fork() -> None:
    global _state
    _state = _State(_state.path, _state.fail)


os.register_at_fork(after_in_child=_after_fork)


def configure(socket_path: str | None, fail: str | None = None) -> None:
    """Use the decide socket at ``socket_path`` (None: turn request-time policy off).

    ``fail`` (open|closed) is the outcome while runwatch is unreachable, until it answers."""
    global _state
    if fail is not None and fail not in ("open", "closed"):
        raise ValueError(f"fail must be open or closed, not {fail!r}")
    _state = _State(socket_path, fail)


def policy_active() -> bool:
    """Whether ``tool_call`` consults runwatch before running a tool."""
    return _state.client is not None


def _local(tool: str, why: str) -> Decision:
    fail = _state.fail
    verdict = "allow" if fail == "open" else "deny"
    return Decision(verdict, "fail_" + fail, reason=f"runwatch policy unreachable ({why}); fail {fail} -> {verdict}",
                    source="local")


def decide_digest(tool_name: str, args_digest: str | None = None, *, agent: str | None = None,
                  call_id: str | None = None, wait: bool = True) -> Decision:
    """Like :func:`decide` with the argument digest already computed. Never raises."""
    state = _state
    client = state.client
    tool = str(tool_name)
    if client is None:
        return Decision("allow", "allow", rule="no_policy", reason="request-time policy is off", source="local")
    req: dict[str, Any] = {"tool": tool}
    if args_digest is not None:
        req["args_digest"] = args_digest
    if agent is not None:
        req["agent"] = str(agent)
    if call_id is not None:
        req["call_id"] = str(call_id)
    try:
        status, ans = client.request("POST", "/v1/decide", req)
        if status != 200 or not isinstance(ans, dict) or "verdict" not in ans:
            return _local(tool, f"HTTP {status}: {ans.get('error') if isinstance(ans, dict) else ans}")
        if ans.get("fail") in ("open", "closed"):
            state.fail = ans["fail"]
        while ans.get("verdict") == "challenge" and wait and ans.get("challenge_id"):
            left = float(ans.get("timeout_s") or 0.0)
            status, ans = client.request("GET", f"/v1/challenges/{ans['challenge_id']}?wait={left + 1.0:.3f}",
                                         timeout=left + 10.0)
            if status != 200 or not isinstance(ans, dict):
                return _local(tool, f"challenge wait failed with HTTP {status}")
    except (OSError, _Unreachable, ValueError) as exc:
        return _local(tool, f"{client.path}: {exc}")
    return Decision(str(ans.get("verdict")), ans.get("recorded"), ans.get("policy"), ans.get("rule"),
                    str(ans.get("reason") or ""), ans.get("challenge_id"))


def decide(tool_name: str, args: Any = None, *, agent: str | None = None, call_id: str | None = None,
           wait: bool = True) -> Decision:
    """Ask runwatch whether tool ``tool_name`` may run now with ``args`` (sent as a digest only).

    Returns allow or deny; a challenge blocks until approved, rejected or timed out
    (``wait=False`` returns it at once with ``verdict == "challenge"``). Never raises.
    """
    digest = None
    if args is not None:
        from runwatch.sdk import args_digest

        try:
            digest = args_digest(args)
        except Exception:
            digest = None
    return decide_digest(tool_name, digest, agent=agent, call_id=call_id, wait=wait)


def check(tool_name: str, args: Any, agent: str | None, call_id: str | None) -> None:
    """Raise :class:`ToolDenied` unless ``tool_name`` may run (used by ``tool_call``)."""
    d = decide(tool_name, args, agent=agent, call_id=call_id)
    if not d.allowed:
        raise ToolDenied(str(tool_name), d)

"""The local decision endpoint: HTTP/1.1 + JSON over unix sockets (and optional loopback TCP).

Listeners (each a stdlib threading HTTP server, one thread per connection, keep-alive):

* **decide** unix socket (mode 0666, next to the SDK socket so the same directory mount
  reaches containers): ``POST /v1/decide``, ``GET /v1/challenges/ID[?wait=S]``, ``GET /v1/health``.
  The caller's workload comes from the socket's peer credentials (SO_PEERCRED pid ->
  ``/proc`` exe and cgroup container); claims in the body (pid, container, exe) are ignored.
* **control** unix socket (mode 0600, root only): everything above plus ``GET /v1/challenges``
  and ``POST /v1/challenges/ID/approve`` / ``.../reject``. Workloads are not given this
  socket, and an answer is refused (403) when its peer is the asking process, a descendant
  of it or in its cgroup (:meth:`Decider.answer`). Who answered is the peer's credentials
  (SO_PEERCRED uid/gid/pid, ``/proc`` exe and cgroup); the body's ``note`` (or legacy
  ``by``) is kept as free text only.
* optional **TCP** on 127.0.0.1:PORT for gateways: the decide API only; the gateway states
  the workload in the body (``container``, ``labels``, ``exe``, ``pid``) and is trusted to.
  Its challenges have no proven requester pid: only the container rule guards their answers.

``POST /v1/decide`` body: ``{"tool": str, "args"?: any, "args_digest"?: str, "call_id"?: str,
"agent"?: str, "wait"?: bool}`` (plus the TCP claims). ``args`` are never stored: when no digest
is given, their HMAC-SHA256 under the installation's args key (:mod:`runwatch.argskey`, the
SDK's digest) is recorded. Answer: :meth:`Decision.to_wire`
(``verdict``, ``recorded``, ``policy``, ``rule``, ``reason``, ``mode``, ``fail``,
``latency_ns``, and ``challenge_id``/``timeout_s`` for a challenge). With ``"wait": true`` a
challenge is answered only once resolved (long poll). Errors: ``{"error": "one line"}`` with
400 (bad request), 403 (control call on a decide listener, or an answer from the asking
workload), 404, 409 (already resolved).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from runwatch.argskey import ArgsKey
from runwatch.events import Container
from runwatch.listeners import BoundedThreads, prepare_unix_path, socket_alive
from runwatch.policy.challenges import AnswerRefused, ChallengeError
from runwatch.policy.decide import Decider
from runwatch.policy.model import Workload
from runwatch.policy.peers import Peer, Requester, peer_cred, peer_of, requester_of

MAX_BODY = 1 << 20
DEFAULT_DECIDE_SOCKET = "/run/runwatch/sdk/policy.sock"
DEFAULT_CONTROL_SOCKET = "/run/runwatch/control.sock"
_MAX_WAIT_S = 3600.0


MALFORMED_STATUS = frozenset({400, 405, 411, 413, 431})
"""Answers that mean the request was not the API's HTTP/JSON (counted as ``malformed``)."""


class _HttpError(Exception):
    def __init__(self, status: int, message: str, *, malformed: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.malformed = status in MALFORMED_STATUS if malformed is None else malformed


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 411: "Length Required", 413: "Payload Too Large", 431: "Headers Too Large",
            500: "Internal Server Error", 501: "Not Implemented"}
_MAX_LINE = 8192
_MAX_HEADERS = 64


class _Handler(socketserver.StreamRequestHandler):
    """One connection speaking a small HTTP/1.1 subset (keep-alive, Content-Length bodies).

    Hand-rolled rather than ``http.server``: its e-mail based header parser alone costs more
    than a whole decision. ``server`` is a :class:`_Listener`.
    """

    server: _Listener
    _peer: Workload | None = None  # the unix peer's workload, resolved on first use
    _requester: Requester | None = None  # the unix peer as a challenge's requester, with _peer
    path = ""
    headers: dict[str, str] = {}  # replaced per request, never mutated
    raw = b""
    close_after = False

    def handle(self) -> None:
        """Serve requests until the peer closes, asks to close, or sends something unusable."""
        try:
            while self._one():
                pass
        except (OSError, ValueError):
            pass  # peer went away mid-request

    def _one(self) -> bool:
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            return False
        if line in (b"\r\n", b"\n"):
            return True  # tolerated blank line between requests
        if not line.endswith(b"\n"):
            self._send(400, {"error": f"request line longer than {_MAX_LINE} bytes"}, close=True)
            return False
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._send(400, {"error": "malformed request line"}, close=True)
            return False
        method, self.path, version = parts
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            h = self.rfile.readline(_MAX_LINE + 1)
            if h in (b"\r\n", b"\n", b""):
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                self._send(400, {"error": "malformed header line"}, close=True)
                return False
            headers[name.strip().lower()] = value.strip()
        else:
            self._send(431, {"error": f"more than {_MAX_HEADERS} headers"}, close=True)
            return False
        self.headers = headers
        conn = headers.get("connection", "").lower()
        self.close_after = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._send(411, {"error": "chunked bodies are not supported; send Content-Length"}, close=True)
            return False
        # Read the whole body before routing, so an early error answer never leaves body
        # bytes behind to be misread as the next request.
        self.raw = b""
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                self._send(400, {"error": f"bad Content-Length {length!r}"}, close=True)
                return False
            if int(length) > MAX_BODY:
                self._send(413, {"error": f"body larger than {MAX_BODY} bytes"}, close=True)
                return False
            self.raw = self.rfile.read(int(length))
        if method not in ("GET", "POST"):
            self._send(405, {"error": f"method {method} not allowed"})
        else:
            self._dispatch(method)
        return not self.close_after

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, status: int, obj: Any, close: bool = False, *, malformed: bool | None = None) -> None:
        if status in MALFORMED_STATUS if malformed is None else malformed:
            self.server.count_malformed(f"{status}: {obj.get('error', '') if isinstance(obj, dict) else obj}")
        body = json.dumps(obj, separators=(",", ":")).encode()
        close = close or self.close_after
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        if close:
            head += "Connection: close\r\n"
        head += "\r\n"
        self.wfile.write(head.encode("latin-1") + body)  # one write: header and body leave together

    def _body(self) -> dict[str, Any]:
        if "content-length" not in self.headers:
            raise _HttpError(411, "Content-Length required")
        raw = self.raw
        if not raw:
            return {}
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _HttpError(400, f"body is not JSON: {' '.join(str(exc).split())[:200]}") from None
        if not isinstance(obj, dict):
            raise _HttpError(400, "body must be a JSON object")
        return obj

    def _dispatch(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = parse_qs(url.query)
            self._route(method, parts, query)
        except _HttpError as exc:
            self._send(exc.status, {"error": str(exc)}, malformed=exc.malformed)
        except (BrokenPipeError, ConnectionResetError):
            self.close_after = True
        except Exception as exc:  # a bug must answer, not hang the caller
            self._send(500, {"error": f"{type(exc).__name__}: {exc}"})

    # -- routes -----------------------------------------------------------------------------

    def _route(self, method: str, parts: list[str], query: dict[str, list[str]]) -> None:
        srv = self.server
        if parts[:1] != ["v1"]:
            raise _HttpError(404, f"no route {self.path!r}", malformed=True)
        rest = parts[1:]
        if method == "POST" and rest == ["decide"]:
            self._send(200, self._decide(self._body()))
        elif method == "GET" and rest == ["health"]:
            self._send(200, {"ok": True, "policies": len(srv.decider.policies)})
        elif method == "GET" and len(rest) == 2 and rest[0] == "challenges":
            self._send(200, self._challenge(rest[1], query))
        elif method == "GET" and rest == ["challenges"]:
            self._control()
            self._send(200, {"challenges": [c.to_dict() for c in srv.decider.challenges.pending()]})
        elif method == "POST" and len(rest) == 3 and rest[0] == "challenges" and rest[2] in ("approve", "reject"):
            self._control()
            body = self._body()
            note = body.get("note", body.get("by"))
            try:
                ch = srv.decider.answer(rest[1], rest[2], self._answerer(), str(note) if note else None)
            except AnswerRefused as exc:
                raise _HttpError(403, str(exc)) from None
            except ChallengeError as exc:
                raise _HttpError(404 if str(exc).startswith("no challenge") else 409, str(exc)) from None
            self._send(200, ch.to_dict())
        else:
            raise _HttpError(404, f"no route {method} {self.path}", malformed=True)

    def _control(self) -> None:
        if not self.server.control:
            raise _HttpError(403, "challenge answers are only accepted on the control socket")

    def _answerer(self) -> Peer | None:
        """The control peer, read per answer: its /proc facts are checked when it answers."""
        return peer_of(self.connection) if self.server.family == socket.AF_UNIX else None

    def _workload(self, body: dict[str, Any]) -> Workload:
        srv = self.server
        agent = body.get("agent")
        agent = str(agent) if agent is not None else None
        if srv.family == socket.AF_UNIX:
            # One peer per connection, and sockets are close-on-exec: resolve the peer once
            # per connection (keep-alive callers pay for /proc and cgroup lookups once).
            base = self._peer
            if base is None:
                cred = peer_cred(self.connection)
                pid = cred[0] if cred is not None else None
                base = srv.decider.workload_of(pid, None) if pid is not None else Workload()
                self._requester = requester_of(pid) if pid is not None else Requester()
                self._peer = base
            return base if base.agent == agent else msgspec.structs.replace(base, agent=agent)
        container = None
        if body.get("container"):
            name = str(body["container"])
            container = Container(id=str(body.get("container_id") or name), runtime="claimed", name=name)
        labels = body.get("labels") or {}
        if not isinstance(labels, dict):
            raise _HttpError(400, "labels must be an object")
        pid = body.get("pid")
        return Workload(container=container, labels={str(k): str(v) for k, v in labels.items()},
                        exe=str(body["exe"]) if body.get("exe") else None,
                        pid=pid if isinstance(pid, int) else None, agent=agent)

    def _decide(self, body: dict[str, Any]) -> dict[str, Any]:
        tool = body.get("tool")
        if not isinstance(tool, str) or not tool:
            raise _HttpError(400, "'tool' (a non-empty string) is required")
        digest = body.get("args_digest")
        if digest is not None and not isinstance(digest, str):
            raise _HttpError(400, "'args_digest' must be a string")
        if digest is None and "args" in body:
            digest = self.server.args_key.digest(body["args"])
        call_id = body.get("call_id")
        decider = self.server.decider
        workload = self._workload(body)
        decision = decider.decide(workload, tool, digest, call_id=str(call_id) if call_id is not None else None,
                                  requester=self._requester)
        if decision.verdict == "challenge" and body.get("wait") is True and decision.challenge_id:
            decision = decider.await_challenge(decision.challenge_id)
        return decision.to_wire()

    def _challenge(self, cid: str, query: dict[str, list[str]]) -> dict[str, Any]:
        decider = self.server.decider
        wait = query.get("wait", ["0"])[0]
        try:
            wait_s = min(max(float(wait), 0.0), _MAX_WAIT_S)
        except ValueError:
            raise _HttpError(400, f"wait must be a number of seconds, not {wait!r}") from None
        try:
            decision = decider.await_challenge(cid, wait_s) if wait_s > 0 else decider.challenge_decision(cid)
        except ChallengeError as exc:
            raise _HttpError(404, str(exc)) from None
        if decision is None:
            raise _HttpError(404, f"no challenge {cid!r}")
        return decision.to_wire()


class _TcpHandler(_Handler):
    disable_nagle_algorithm = True


class _Listener(BoundedThreads, socketserver.BaseServer):
    """What handlers see of their server (the listeners below add these attributes)."""

    decider: Decider
    args_key: ArgsKey
    control: bool
    label: str
    family: int
    daemon_threads = True
    block_on_close = False
    errors = 0
    malformed = 0
    first_error: str | None = None
    _malformed_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Count, do not print: a client that hangs up mid-request is not runwatch's problem."""
        self.errors += 1

    def count_malformed(self, answer: str) -> None:
        """Count one request that was not the API (any thread); keep the first answer's line."""
        with self._malformed_lock:
            self.malformed += 1
            if self.first_error is None:
                self.first_error = answer[:300]


class _UnixListener(_Listener, socketserver.UnixStreamServer):
    pass


class _TcpListener(_Listener, socketserver.TCPServer):
    allow_reuse_address = True


def _bind_unix(path: str, mode: int) -> _UnixListener:
    prepare_unix_path(path)
    srv = _UnixListener(path, _Handler, bind_and_activate=True)
    os.chmod(path, mode)
    return srv


class PolicyServer:
    """The decide and control listeners around one :class:`Decider`.

    Lifecycle: ``start()`` binds every listener (an existing live socket is an error, a
    stale one is replaced) and serves each on a daemon thread; ``stop()`` (idempotent)
    closes them and removes the socket files. Use as a context manager. ``args_key`` digests
    raw ``args`` (default: the installation's key, made on first use).
    """

    def __init__(self, decider: Decider, decide_socket: str | None = DEFAULT_DECIDE_SOCKET,
                 control_socket: str | None = DEFAULT_CONTROL_SOCKET, tcp_port: int | None = None,
                 tcp_host: str = "127.0.0.1", *, args_key: ArgsKey | None = None) -> None:
        self.decider = decider
        self.args_key = args_key if args_key is not None else ArgsKey()
        self.decide_socket = decide_socket
        self.control_socket = control_socket
        self.tcp_port = tcp_port
        self.tcp_host = tcp_host
        self._servers: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._paths: list[str] = []
        self._stopped_counts: dict[str, tuple[int, str | None]] = {}  # malformed() once stopped

    def _add(self, srv: Any, control: bool, label: str, family: int) -> None:
        srv.decider, srv.control, srv.label, srv.family = self.decider, control, label, family
        srv.args_key = self.args_key
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                             name=f"runwatch-policy-{label}", daemon=True)
        self._servers.append(srv)
        self._threads.append(t)
        t.start()

    def start(self) -> PolicyServer:
        """Bind and serve every configured listener; on failure nothing stays bound."""
        try:
            for path, control, mode in ((self.decide_socket, False, 0o666), (self.control_socket, True, 0o600)):
                if path is None:
                    continue
                if socket_alive(path):
                    raise OSError(f"{path}: another runwatch is already serving policy decisions there")
                srv = _bind_unix(path, mode)
                self._paths.append(path)
                self._add(srv, control, "control" if control else "decide", socket.AF_UNIX)
            if self.tcp_port is not None:
                tcp = _TcpListener((self.tcp_host, self.tcp_port), _TcpHandler)
                self.tcp_port = tcp.server_address[1]
                self._add(tcp, False, "tcp", socket.AF_INET)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, close the listeners and remove the socket files. Idempotent; the counts
        of :meth:`malformed` stay."""
        if self._servers:
            self._stopped_counts = self.malformed()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                srv.shutdown()
            with contextlib.suppress(Exception):
                srv.server_close()
        for t in self._threads:
            t.join(timeout=2)
        for path in self._paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._servers, self._threads, self._paths = [], [], []

    def stats(self) -> dict[str, int]:
        """``connections`` open now, ``refused_connections`` over the bound, ``errors`` and
        ``malformed`` requests, over all listeners."""
        return {"connections": sum(srv.active for srv in self._servers),
                "refused_connections": sum(srv.refused for srv in self._servers),
                "errors": sum(srv.errors for srv in self._servers),
                "malformed": sum(srv.malformed for srv in self._servers)}

    def malformed(self) -> dict[str, tuple[int, str | None]]:
        """Per listener (``decide``, ``control``, ``tcp``): (malformed requests, the first one's answer)."""
        if not self._servers:
            return dict(self._stopped_counts)
        return {srv.label: (srv.malformed, srv.first_error) for srv in self._servers}

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The tools the bundled agents call, each invocation wrapped in a runwatch tool call.

Tools really act: ``run_shell`` runs ``/bin/sh -c``, ``read_file`` opens the file,
``http_get``/``http_post`` open a TCP connection and speak HTTP/1.1, ``python_eval``
evaluates an arithmetic expression in-process (no exec). A :class:`Toolbox` numbers its
calls (``call_id`` = ``<prefix>-<n>``) so every kernel event the join attributes to a call
can be traced back to exactly one line of the agent's plan.

Not thread safe: one toolbox per agent thread.
"""

from __future__ import annotations

import ast
import http.client
import itertools
import operator
import os
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from runwatch import sdk

SECRETS_DIR = "/run/secrets/"
MAX_BODY = 64 * 1024
"""Bytes of a response or file a tool returns at most."""

ToolFn = Callable[..., str]


class ToolError(RuntimeError):
    """A tool failed; the message is one line (the agent reports it and carries on)."""


def _connect_target(url: str) -> tuple[str, int, str]:
    """(host, port, path-with-query) of an http:// URL; raises ToolError for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ToolError(f"only http:// URLs are supported, not {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


def resolve(host: str) -> str:
    """IPv4 address of ``host`` via the container's resolver (A query only); literals unchanged."""
    try:
        socket.inet_aton(host)
        return host
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ToolError(f"cannot resolve {host}: {exc.strerror}") from None
    return str(infos[0][4][0])


def _request(method: str, url: str, body: bytes | None = None, content_type: str = "application/json") -> str:
    host, port, path = _connect_target(url)
    addr = resolve(host)
    conn = http.client.HTTPConnection(addr, port, timeout=5)
    try:
        headers = {"Host": host, "User-Agent": "runwatch-demo-agent/1"}
        if body is not None:
            headers["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read(MAX_BODY)
    except OSError as exc:
        raise ToolError(f"{method} {url}: {exc}") from None
    finally:
        conn.close()
    if resp.status >= 400:
        raise ToolError(f"{method} {url}: HTTP {resp.status}")
    return data.decode(errors="replace")


def http_get(url: str) -> str:
    """GET ``url`` (http only); returns the body."""
    return _request("GET", url)


def http_post(url: str, data: str, content_type: str = "application/json") -> str:
    """POST ``data`` to ``url`` (http only); returns the body."""
    return _request("POST", url, data.encode(), content_type)


def run_shell(cmd: str) -> str:
    """Run ``cmd`` with ``/bin/sh -c``; returns stdout and stderr (10 s limit)."""
    try:
        done = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(f"command timed out: {cmd!r}") from None
    return (done.stdout + done.stderr).decode(errors="replace")[:MAX_BODY]


def read_file(path: str) -> str:
    """The text of ``path``. Reading below /run/secrets also records an SDK ``secret.access``."""
    if path.startswith(SECRETS_DIR):
        sdk.secret_access(path[len(SECRETS_DIR):], "file")
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_BODY).decode(errors="replace")
    except OSError as exc:
        raise ToolError(f"cannot read {path}: {exc.strerror}") from None


_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod, ast.Pow: operator.pow, ast.USub: operator.neg,
}


def _arith(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return int(_OPS[type(node.op)](_arith(node.left), _arith(node.right)))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return int(_OPS[type(node.op)](_arith(node.operand)))
    raise ToolError(f"python_eval accepts integer arithmetic only, not {type(node).__name__}")


def python_eval(expr: str) -> str:
    """Evaluate an integer arithmetic expression in-process (no exec, no imports)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an expression: {expr!r}") from None
    return str(_arith(tree.body))


BUILTIN_TOOLS: dict[str, ToolFn] = {
    "http_get": http_get,
    "http_post": http_post,
    "run_shell": run_shell,
    "read_file": read_file,
    "python_eval": python_eval,
}


class Toolbox:
    """Named tools an agent may call; :meth:`call` runs one inside ``sdk.tool_call``."""

    def __init__(self, agent: str, prefix: str, tools: dict[str, ToolFn] | None = None) -> None:
        self.agent = agent
        self.prefix = prefix
        self.tools: dict[str, ToolFn] = dict(BUILTIN_TOOLS if tools is None else tools)
        self._n = itertools.count(1)
        self.log: list[tuple[str, str, str]] = []  # (call_id, tool, outcome: ok | error text)

    def register(self, name: str, fn: ToolFn) -> None:
        """Add a tool (a plugin's, for example); a name already taken is refused."""
        if name in self.tools:
            raise ToolError(f"tool {name!r} is already registered")
        self.tools[name] = fn

    def call(self, name: str, args: dict[str, Any], call_id: str | None = None) -> str:
        """Run tool ``name`` with ``args`` inside a tool call; errors come back as text."""
        cid = call_id if call_id is not None else f"{self.prefix}-{next(self._n)}"
        fn = self.tools.get(name)
        with sdk.tool_call(name, call_id=cid, agent=self.agent, args=args):
            if fn is None:
                self.log.append((cid, name, "error: unknown tool"))
                return f"error: unknown tool {name}"
            try:
                out = fn(**args)
            except ToolError as exc:
                self.log.append((cid, name, f"error: {exc}"))
                return f"error: {exc}"
        self.log.append((cid, name, "ok"))
        return out


LINGER_S = 0.3


def linger(seconds: float = LINGER_S) -> None:
    """Stay alive briefly after the last SDK message so the collector can still resolve this
    process's cgroup (it reads /proc of the sender when it receives a message)."""
    time.sleep(seconds)


def say(*parts: object) -> None:
    """Print one progress line from inside the container (flushed: the driver reads it)."""
    print(f"[{os.getpid()}]", *parts, flush=True)

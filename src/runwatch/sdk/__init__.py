"""What an agent imports to tell runwatch about its AI-layer actions.

Stdlib only (agents may vendor this package). Every function is safe to call with no
collector running: nothing raises, nothing blocks on I/O, the agent's output and exit code
are unchanged; undelivered messages are counted in :func:`stats`.

    from runwatch import sdk

    with sdk.tool_call("run_shell", call_id="c-23", agent="planner", args={"cmd": "ls"}):
        subprocess.run(["ls"])

    @sdk.tool_call("http_get")
    async def http_get(url: str) -> str: ...

Kernel events (execs, connects, file opens) made by the thread inside a tool call, and by
processes it spawns, are attributed to the call by runwatch's join from the pid namespace,
pid and thread id each message carries. Context follows ``contextvars``: asyncio tasks
inherit the enclosing call, new threads start outside any call.

Tool arguments are sent only as an HMAC-SHA256 digest (key from ``RUNWATCH_ARGS_KEY`` or a
per-process random key) unless the operator sets ``RUNWATCH_STORE_ARGS=1``. Secret values
are never sent.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import hmac
import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from runwatch.sdk.transport import Transport, get_transport, set_transport
from runwatch.sdk.wire import ENV_ARGS_KEY, ENV_STORE_ARGS, MAX_ARGS, WIRE_VERSION

__all__ = [
    "ToolCallScope",
    "Transport",
    "announce",
    "args_digest",
    "current_tool_call",
    "flush",
    "model_call",
    "plugin_load",
    "prompt_route",
    "secret_access",
    "set_transport",
    "stats",
    "tool_call",
]

F = TypeVar("F", bound=Callable[..., Any])


class _Span:
    """One open tool call (what the context variable holds)."""

    __slots__ = ("agent", "call_id", "name", "sid", "start")

    def __init__(self, name: str, call_id: str | None, agent: str | None, sid: int, start: int) -> None:
        self.name, self.call_id, self.agent, self.sid, self.start = name, call_id, agent, sid, start


_current: contextvars.ContextVar[_Span | None] = contextvars.ContextVar("runwatch_tool_call", default=None)
_route: contextvars.ContextVar[str | None] = contextvars.ContextVar("runwatch_prompt_route", default=None)
_sids = itertools.count(1)


class _Identity:
    """This process's pid, pid-namespace inode and args key (recomputed after fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        try:
            self.ns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            self.ns = 0
        env_key = os.environ.get(ENV_ARGS_KEY)
        self.key = env_key.encode() if env_key else os.urandom(32)
        self.store_args = os.environ.get(ENV_STORE_ARGS, "") == "1"


_ident = _Identity()


def _after_fork() -> None:
    global _ident, _sids
    _ident = _Identity()
    _sids = itertools.count(1)


os.register_at_fork(after_in_child=_after_fork)


def _base(kind: str) -> dict[str, Any]:
    ident = _ident
    return {"v": WIRE_VERSION, "k": kind, "m": time.monotonic_ns(), "pid": ident.pid,
            "tid": threading.get_native_id(), "ns": ident.ns}


def _with_context(msg: dict[str, Any]) -> dict[str, Any]:
    """Add the enclosing tool call and prompt route to a non-tool message."""
    span = _current.get()
    if span is not None:
        msg["psid"] = span.sid
        msg["pname"] = span.name
        if span.call_id is not None:
            msg["pcid"] = span.call_id
        if span.agent is not None:
            msg["pagent"] = span.agent
    route = _route.get()
    if route is not None and "route" not in msg:
        msg["route"] = route
    return msg


def _canonical(args: Any) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=repr, ensure_ascii=False)


def args_digest(args: Any, key: bytes | None = None) -> str:
    """HMAC-SHA256 (hex) of the canonical JSON of ``args`` under this process's args key."""
    return hmac.new(key if key is not None else _ident.key, _canonical(args).encode(), hashlib.sha256).hexdigest()


def _submit(msg: dict[str, Any]) -> None:
    get_transport().submit(msg)


class ToolCallScope:
    """A tool call: context manager (sync and async) and decorator (sync and async functions).

    Entering sends ``tool.start``; leaving sends ``tool.end`` with the duration and status
    (``ok``, or ``error`` with the exception type when one propagates; the exception is
    never swallowed). One scope object may be entered by one caller at a time; as a
    decorator a fresh scope is used per invocation, so decorated functions are re-entrant
    and thread safe.
    """

    def __init__(self, name: str, call_id: str | None = None, agent: str | None = None, args: Any = None) -> None:
        self.name, self.call_id, self.agent, self.args = str(name), call_id, agent, args
        self._span: _Span | None = None
        self._token: contextvars.Token[_Span | None] | None = None

    # -- context manager --------------------------------------------------------------------

    def __enter__(self) -> ToolCallScope:
        try:
            start = time.monotonic_ns()
            parent = _current.get()
            span = _Span(self.name, self.call_id, self.agent, next(_sids), start)
            self._span = span
            self._token = _current.set(span)
            msg = _base("tool.start")
            msg["m"] = start
            msg["sid"] = span.sid
            msg["name"] = span.name
            if span.call_id is not None:
                msg["cid"] = span.call_id
            if span.agent is not None:
                msg["agent"] = span.agent
            if parent is not None:
                msg["psid"] = parent.sid
            route = _route.get()
            if route is not None:
                msg["route"] = route
            if self.args is not None:
                ident = _ident
                text = _canonical(self.args)
                msg["ah"] = hmac.new(ident.key, text.encode(), hashlib.sha256).hexdigest()
                if ident.store_args:
                    msg["args"] = text[:MAX_ARGS]
            _submit(msg)
        except Exception:
            pass  # never let instrumentation change the agent's behaviour
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            end = time.monotonic_ns()
            span, token = self._span, self._token
            self._span = self._token = None
            if token is not None:
                try:
                    _current.reset(token)
                except ValueError:  # exited in another context (e.g. a different task)
                    _current.set(None)
            if span is None:
                return
            msg = _base("tool.end")
            msg["m"] = end
            msg["sid"] = span.sid
            msg["sm"] = span.start
            msg["dur"] = end - span.start
            msg["name"] = span.name
            if span.call_id is not None:
                msg["cid"] = span.call_id
            if span.agent is not None:
                msg["agent"] = span.agent
            msg["st"] = "ok" if exc_type is None else "error"
            if exc_type is not None:
                msg["err"] = exc_type.__name__
            _submit(msg)
        except Exception:
            pass

    async def __aenter__(self) -> ToolCallScope:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator --------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        name, call_id, agent, args = self.name, self.call_id, self.agent, self.args
        import inspect  # lazily: it is the heaviest import here

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def awrapper(*a: Any, **kw: Any) -> Any:
                with ToolCallScope(name, call_id, agent, args):
                    return await func(*a, **kw)
            return cast(F, awrapper)

        @functools.wraps(func)
        def wrapper(*a: Any, **kw: Any) -> Any:
            with ToolCallScope(name, call_id, agent, args):
                return func(*a, **kw)
        return cast(F, wrapper)

    @property
    def sid(self) -> int | None:
        """Span id of the open call (None outside it)."""
        return self._span.sid if self._span is not None else None


@overload
def tool_call(name: str, call_id: str | None = None, agent: str | None = None, args: Any = None) -> ToolCallScope: ...
@overload
def tool_call(name: F) -> F: ...
def tool_call(name: str | F, call_id: str | None = None, agent: str | None = None,
              args: Any = None) -> ToolCallScope | F:
    """A tool call named ``name``: ``with tool_call(...)``, ``async with``, or ``@tool_call(...)``.

    ``@tool_call`` with no arguments on a function uses the function's name.
    ``args`` are sent as a keyed digest only (see the module docstring).
    """
    if callable(name):
        func = name
        return ToolCallScope(getattr(func, "__name__", "tool"))(func)
    return ToolCallScope(name, call_id, agent, args)


def current_tool_call() -> tuple[str, str | None, str | None] | None:
    """(name, call_id, agent) of the innermost open tool call in this context, or None."""
    span = _current.get()
    return None if span is None else (span.name, span.call_id, span.agent)


def model_call(provider: str, model: str) -> None:
    """Record a model invocation (provider and model name); carries the enclosing call and route."""
    try:
        msg = _base("model.call")
        msg["prov"], msg["model"] = str(provider), str(model)
        _submit(_with_context(msg))
    except Exception:
        pass


class _RouteScope:
    """Restores the previous prompt route when used as a context manager."""

    def __init__(self, token: contextvars.Token[str | None] | None) -> None:
        self._token = token

    def __enter__(self) -> _RouteScope:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            try:
                _route.reset(self._token)
            except ValueError:
                _route.set(None)
            self._token = None


def prompt_route(route: str) -> _RouteScope:
    """Record that a prompt was routed to ``route`` and make it the current route.

    Later tool and model messages in this context carry the route. Use ``with
    prompt_route(...)`` to restore the previous route afterwards.
    """
    token: contextvars.Token[str | None] | None = None
    try:
        token = _route.set(str(route))
        msg = _base("prompt.route")
        msg["route"] = str(route)
        _submit(_with_context(msg))
    except Exception:
        pass
    return _RouteScope(token)


def plugin_load(name: str, source: str, sha256: str | None = None) -> None:
    """Record that plugin ``name`` was loaded from ``source`` (path, URL, package)."""
    try:
        msg = _base("plugin.load")
        msg["name"], msg["src"] = str(name), str(source)
        if sha256 is not None:
            msg["sha"] = str(sha256)
        _submit(_with_context(msg))
    except Exception:
        pass


def secret_access(name: str, kind: str) -> None:
    """Record that secret ``name`` (of ``kind``: env, file, vault, ...) was used. Never its value."""
    try:
        msg = _base("secret.access")
        msg["name"], msg["sk"] = str(name), str(kind)
        _submit(_with_context(msg))
    except Exception:
        pass


def announce(agent: str | None = None) -> None:
    """Tell the collector this process is an instrumented agent from now on.

    Optional: any SDK message does the same; announcing at start-up makes kernel activity
    before the first tool call count as unattested too.
    """
    try:
        msg = _base("hello")
        if agent is not None:
            msg["agent"] = str(agent)
        _submit(msg)
    except Exception:
        pass


def stats() -> dict[str, int]:
    """Delivery counters of this process's transport (submitted, sent, dropped, ...)."""
    try:
        return get_transport().stats()
    except Exception:
        return {}


def flush(timeout: float = 1.0) -> bool:
    """Wait up to ``timeout`` s for buffered messages to be sent or dropped; True if empty."""
    try:
        return get_transport().flush(timeout)
    except Exception:
        return False

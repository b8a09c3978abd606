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

When ``RUNWATCH_POLICY_SOCKET`` is set, ``tool_call`` first asks runwatch's policy
(:mod:`runwatch.sdk.policy`); a denied call raises :class:`ToolDenied` before its body runs
(and sends no ``tool.start``). :func:`decide` asks explicitly.

Tool arguments are sent only as an HMAC-SHA256 digest (key from ``RUNWATCH_ARGS_KEY`` or a
per-process random key) unless the operator sets ``RUNWATCH_STORE_ARGS=1``. Secret values
are never sent.
"""

from __future__ import annotations

import contextlib
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

from runwatch.sdk import policy as _policy
from runwatch.sdk.policy import Decision, ToolDenied, decide
from runwatch.sdk.transport import Transport, get_transport, set_transport
from runwatch.sdk.wire import ENV_ARGS_KEY, ENV_STORE_ARGS, MAX_ARGS

__all__ = [
    "Decision",
    "ToolCallScope",
    "ToolDenied",
    "Transport",
    "announce",
    "args_digest",
    "current_tool_call",
    "decide",
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
    """This process's args key and opt-in (re-read after fork). Pid and namespace live in the transport."""

    def __init__(self) -> None:
        env_key = os.environ.get(ENV_ARGS_KEY)
        self.key = env_key.encode() if env_key else os.urandom(32)
        self.store_args = os.environ.get(ENV_STORE_ARGS, "") == "1"


_ident = _Identity()


def _after_fork() -> None:
    global _ident, _sids
    _ident = _Identity()
    _sids = itertools.count(1)


os.register_at_fork(after_in_child=_after_fork)


def _with_context(extra: dict[str, Any]) -> dict[str, Any]:
    """Add the enclosing tool call and prompt route to a non-tool message's members."""
    span = _current.get()
    if span is not None:
        extra["psid"] = span.sid
        extra["pname"] = span.name
        if span.call_id is not None:
            extra["pcid"] = span.call_id
        if span.agent is not None:
            extra["pagent"] = span.agent
    route = _route.get()
    if route is not None and "route" not in extra:
        extra["route"] = route
    return extra


_enc = json.JSONEncoder(ensure_ascii=False).encode
_frags: dict[tuple[str, str | None, str | None], str] = {}


def _fragment(name: str, call_id: str | None, agent: str | None) -> str:
    """Pre-encoded JSON members naming a tool call (cached: tool names repeat)."""
    key = (name, call_id, agent)
    frag = _frags.get(key)
    if frag is None:
        frag = ',"name":' + _enc(name)
        if call_id is not None:
            frag += ',"cid":' + _enc(call_id)
        if agent is not None:
            frag += ',"agent":' + _enc(agent)
        if len(_frags) > 1024:
            _frags.clear()
        _frags[key] = frag
    return frag


def _canonical(args: Any) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=repr, ensure_ascii=False)


def args_digest(args: Any, key: bytes | None = None) -> str:
    """HMAC-SHA256 (hex) of the canonical JSON of ``args`` under this process's args key."""
    return hmac.new(key if key is not None else _ident.key, _canonical(args).encode(), hashlib.sha256).hexdigest()


def _submit(kind: str, extra: dict[str, Any] | None, frag: str = "", mono: int | None = None) -> None:
    get_transport().submit((kind, time.monotonic_ns() if mono is None else mono, threading.get_native_id(),
                            frag, extra))


class ToolCallScope:
    """A tool call: context manager (sync and async) and decorator (sync and async functions).

    Entering sends ``tool.start``; leaving sends ``tool.end`` with the duration and status
    (``ok``, or ``error`` with the exception type when one propagates; the exception is
    never swallowed). One scope object may be entered by one caller at a time; as a
    decorator a fresh scope is used per invocation, so decorated functions are re-entrant
    and thread safe.
    """

    def __init__(self, name: str, call_id: str | None = None, agent: str | None = None, args: Any = None, *,
                 served_by: int | None = None) -> None:
        self.name, self.call_id, self.agent, self.args = str(name), call_id, agent, args
        self.served_by = served_by
        self._span: _Span | None = None
        self._token: contextvars.Token[_Span | None] | None = None

    # -- context manager --------------------------------------------------------------------

    def __enter__(self) -> ToolCallScope:
        if _policy.policy_active():
            _policy.check(self.name, self.args, self.agent, self.call_id)  # raises ToolDenied
        return self._open()

    def _open(self) -> ToolCallScope:
        """Start the call (sends ``tool.start``); never raises."""
        try:
            start = time.monotonic_ns()
            parent = _current.get()
            span = _Span(self.name, self.call_id, self.agent, next(_sids), start)
            self._span = span
            self._token = _current.set(span)
            frag = _fragment(span.name, span.call_id, span.agent)
            head = f',"sid":{span.sid}' if parent is None else f',"sid":{span.sid},"psid":{parent.sid}'
            extra: dict[str, Any] | None = None
            route = _route.get()
            if route is not None:
                extra = {"route": route}
            if self.served_by is not None:
                extra = extra or {}
                extra["spid"] = int(self.served_by)
            if self.args is not None:
                ident = _ident
                text = _canonical(self.args)
                extra = extra or {}
                extra["ah"] = hmac.new(ident.key, text.encode(), hashlib.sha256).hexdigest()
                if ident.store_args:
                    extra["args"] = text[:MAX_ARGS]
            _submit("tool.start", extra, head + frag, start)
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
            frag = _fragment(span.name, span.call_id, span.agent)
            if exc_type is None:
                head = f',"sid":{span.sid},"sm":{span.start},"dur":{end - span.start},"st":"ok"'
                _submit("tool.end", None, head + frag, end)
            else:
                head = f',"sid":{span.sid},"sm":{span.start},"dur":{end - span.start},"st":"error"'
                _submit("tool.end", {"err": exc_type.__name__}, head + frag, end)
        except Exception:
            pass

    async def __aenter__(self) -> ToolCallScope:
        if _policy.policy_active():
            import asyncio

            # A challenge may wait for a person: keep the event loop running meanwhile.
            await asyncio.to_thread(_policy.check, self.name, self.args, self.agent, self.call_id)
        return self._open()

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
def tool_call(name: str, call_id: str | None = None, agent: str | None = None, args: Any = None, *,
              served_by: int | None = None) -> ToolCallScope: ...
@overload
def tool_call(name: F) -> F: ...
def tool_call(name: str | F, call_id: str | None = None, agent: str | None = None,
              args: Any = None, *, served_by: int | None = None) -> ToolCallScope | F:
    """A tool call named ``name``: ``with tool_call(...)``, ``async with``, or ``@tool_call(...)``.

    ``@tool_call`` with no arguments on a function uses the function's name.
    ``args`` are sent as a keyed digest only (see the module docstring).
    ``served_by``: the pid (as this process sees it) of another process that does the call's
    work, such as an MCP server started over stdio; its kernel events while the call is open
    are attributed to the call, whether or not it is instrumented itself.
    """
    if callable(name):
        func = name
        return ToolCallScope(getattr(func, "__name__", "tool"))(func)
    return ToolCallScope(name, call_id, agent, args, served_by=served_by)


def current_tool_call() -> tuple[str, str | None, str | None] | None:
    """(name, call_id, agent) of the innermost open tool call in this context, or None."""
    span = _current.get()
    return None if span is None else (span.name, span.call_id, span.agent)


def model_call(provider: str, model: str) -> None:
    """Record a model invocation (provider and model name); carries the enclosing call and route."""
    with contextlib.suppress(Exception):
        _submit("model.call", _with_context({"prov": str(provider), "model": str(model)}))


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
        _submit("prompt.route", _with_context({"route": str(route)}))
    except Exception:
        pass
    return _RouteScope(token)


def plugin_load(name: str, source: str, sha256: str | None = None) -> None:
    """Record that plugin ``name`` was loaded from ``source`` (path, URL, package)."""
    try:
        extra: dict[str, Any] = {"name": str(name), "src": str(source)}
        if sha256 is not None:
            extra["sha"] = str(sha256)
        _submit("plugin.load", _with_context(extra))
    except Exception:
        pass


def secret_access(name: str, kind: str) -> None:
    """Record that secret ``name`` (of ``kind``: env, file, vault, ...) was used. Never its value."""
    with contextlib.suppress(Exception):
        _submit("secret.access", _with_context({"name": str(name), "sk": str(kind)}))


def announce(agent: str | None = None) -> None:
    """Tell the collector this process is an instrumented agent from now on.

    Optional: any SDK message does the same; announcing at start-up makes kernel activity
    before the first tool call count as unattested too.
    """
    with contextlib.suppress(Exception):
        _submit("hello", {"agent": str(agent)} if agent is not None else None)


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

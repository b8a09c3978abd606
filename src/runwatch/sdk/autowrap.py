"""Tool-dispatch wrappers for agent libraries, applied when (and if) the libraries are imported.

Stdlib only. :func:`install` puts a finder at the front of ``sys.meta_path`` that, for the
few module names below and nothing else, lets the normal finders find the module and then
patches it right after it has executed; modules already imported are patched at once.
Every patch is idempotent and defensive: if a library's internals moved, that patch is
skipped (and listed by :func:`applied`), the library works unchanged.

What is wrapped:

* **MCP client** (``mcp.client.session.ClientSession``): ``call_tool(name, ...)`` runs inside
  ``tool_call(name, call_id=<generated "mcp-..." id>, agent=<server name>)`` and passes the
  call id to the server in the request's ``_meta`` (key :data:`META_CALL_ID`) so an
  instrumented server opens its call under the same id; ``adopt`` (the initialize/discover
  result) reports ``plugin.load`` for the server (name, version, and the stdio command line
  when ``mcp.client.stdio.stdio_client`` started it).
* **MCP stdio servers started by an instrumented agent** get ``RUNWATCH_SOCKET``,
  ``RUNWATCH_AUTOINSTRUMENT=1`` and the sitecustomize directory on ``PYTHONPATH`` in their
  environment (unless ``RUNWATCH_PROPAGATE=0`` or the agent set those keys itself).
* **MCP server** (``mcp.server.mcpserver``): the ``tools/call`` handler records the request,
  and the tool function itself runs inside ``tool_call(name, call_id=<from _meta>,
  agent=<server name>)`` in the thread it runs on (sync tools run on a worker thread, so
  the kernel join sees the thread that does the work).
* **OpenAI** (``openai.lib.responses_tool_runner``, ``openai.lib.streaming.agents._dispatch``):
  the runners' function-tool execution runs inside ``tool_call(name, call_id=call_id)``.
  ``openai`` does not execute chat-completions tool calls itself; for those, agents call
  :func:`dispatch_tool_calls` (or :func:`adispatch_tool_calls`).
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runwatch import sdk

if TYPE_CHECKING:
    import importlib.machinery

# Start-up cost matters (this is imported by every instrumented interpreter): importlib.abc,
# inspect and uuid are not imported here; the patches that need inspect import it when applied.

META_CALL_ID = "io.runwatch/call_id"
"""The request ``_meta`` key carrying the client's tool call id to an MCP server."""

ENV_PROPAGATE = "RUNWATCH_PROPAGATE"
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sitecustomize")
"""The directory holding runwatch's ``sitecustomize.py`` (put it on ``PYTHONPATH``)."""

_MARK = "__runwatch_wrapped__"
_applied: dict[str, bool] = {}
_lock = threading.RLock()  # re-entrant: a patch may import another patched module


# -- OpenAI-style function calling -----------------------------------------------------------------


def _tool_calls(message_or_response: Any) -> list[Any]:
    """The ``tool_calls`` of a ChatCompletion, its first choice's message, or a message (object or dict)."""
    obj = message_or_response
    choices = obj.get("choices") if isinstance(obj, Mapping) else getattr(obj, "choices", None)
    if choices:
        first = choices[0]
        obj = first.get("message") if isinstance(first, Mapping) else getattr(first, "message", None)
    calls = obj.get("tool_calls") if isinstance(obj, Mapping) else getattr(obj, "tool_calls", None)
    if calls is None and obj is None:
        raise ValueError("no message in the response to take tool calls from")
    return list(calls or [])


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _parse_call(call: Any) -> tuple[str, str | None, dict[str, Any]]:
    fn = _field(call, "function")
    name = _field(fn, "name") if fn is not None else None
    call_id = _field(call, "id")
    if not isinstance(name, str) or not name:
        raise ValueError(f"tool call {call_id!r} has no function name")
    raw = _field(fn, "arguments")
    try:
        args = json.loads(raw) if isinstance(raw, str) and raw.strip() else (dict(raw) if raw else {})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"tool call {call_id!r} ({name}): arguments are not a JSON object: {exc}") from None
    if not isinstance(args, dict):
        raise ValueError(f"tool call {call_id!r} ({name}): arguments are not a JSON object")
    return name, call_id if isinstance(call_id, str) else None, args


def _result_message(call_id: str | None, result: Any) -> dict[str, Any]:
    content = result if isinstance(result, str) else json.dumps(result, default=str)
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _checked_calls(message_or_response: Any,
                   registry: Mapping[str, Callable[..., Any]]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """The message's (name, call id, arguments) calls; ValueError (one line) if one names an unknown tool."""
    parsed = [_parse_call(c) for c in _tool_calls(message_or_response)]
    for name, call_id, _ in parsed:
        if name not in registry:
            raise ValueError(f"tool call {call_id!r} names unknown tool {name!r} (known: {sorted(registry)})")
    return parsed


def dispatch_tool_calls(message_or_response: Any, registry: Mapping[str, Callable[..., Any]],
                        agent: str | None = None) -> list[dict[str, Any]]:
    """Run every function tool call of an OpenAI-style message, each inside its ``tool_call``.

    ``message_or_response``: a ``ChatCompletion``, a ``ChatCompletionMessage`` (or their dict
    forms). ``registry`` maps function names to callables taking the JSON arguments as
    keywords. Calls run in order, each inside ``tool_call(name, call_id=tool_call.id,
    agent=agent, args=arguments)``. Returns the ``{"role": "tool", "tool_call_id", "content"}``
    messages to send back (non-string results as JSON). Raises ``ValueError`` (one line) for a
    call naming no registered tool or with arguments that are not a JSON object, before any
    tool of the message runs; a tool's own exception propagates after its ``tool.end``.
    """
    parsed = _checked_calls(message_or_response, registry)
    out: list[dict[str, Any]] = []
    for name, call_id, args in parsed:
        with sdk.tool_call(name, call_id=call_id, agent=agent, args=args):
            result = registry[name](**args)
        out.append(_result_message(call_id, result))
    return out


async def adispatch_tool_calls(message_or_response: Any, registry: Mapping[str, Callable[..., Any]],
                               agent: str | None = None) -> list[dict[str, Any]]:
    """:func:`dispatch_tool_calls` for registries of coroutine functions (plain functions work too)."""
    parsed = _checked_calls(message_or_response, registry)
    out: list[dict[str, Any]] = []
    for name, call_id, args in parsed:
        async with sdk.tool_call(name, call_id=call_id, agent=agent, args=args):
            result = registry[name](**args)
            if hasattr(result, "__await__"):
                result = await result
        out.append(_result_message(call_id, result))
    return out


# -- helpers for patches ---------------------------------------------------------------------------


def _wrap_method(cls: Any, attr: str, make: Callable[[Any], Any]) -> bool:
    """Replace ``cls.attr`` by ``make(original)`` once; False if there is no such attribute."""
    original = cls.__dict__.get(attr)
    if original is None:
        return False
    if getattr(original, _MARK, False):
        return True
    wrapped = make(original)
    functools.update_wrapper(wrapped, original)
    setattr(wrapped, _MARK, True)
    setattr(cls, attr, wrapped)
    return True


def _propagated_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    """``env`` plus what makes a Python child instrumented, unless opted out or already set."""
    if os.environ.get(ENV_PROPAGATE, "1") == "0":
        return dict(env) if env is not None else None
    out = dict(env) if env is not None else {}
    for key in ("RUNWATCH_SOCKET", "RUNWATCH_WATCH_PATHS", "RUNWATCH_STORE_ARGS", "RUNWATCH_ARGS_KEY"):
        if key in os.environ and key not in out:
            out[key] = os.environ[key]
    out.setdefault("RUNWATCH_AUTOINSTRUMENT", "1")
    if "PYTHONPATH" not in out:
        current = os.environ.get("PYTHONPATH", "")
        parts = [p for p in current.split(os.pathsep) if p]
        out["PYTHONPATH"] = os.pathsep.join([SITE_DIR, *[p for p in parts if p != SITE_DIR]])
    return out


# -- MCP client ------------------------------------------------------------------------------------

_stdio_sources: dict[int, tuple[Any, str]] = {}  # id(read stream) -> (stream, command line)
_mcp_ids = contextvars.ContextVar[int]("runwatch_mcp_ids", default=0)


def _patch_mcp_stdio(mod: ModuleType) -> bool:
    original = getattr(mod, "stdio_client", None)
    if original is None:
        return False
    if getattr(original, _MARK, False):
        return True
    import contextlib

    @contextlib.asynccontextmanager
    async def stdio_client(server: Any, *args: Any, **kwargs: Any) -> Any:
        command = " ".join([str(getattr(server, "command", "")), *map(str, getattr(server, "args", []) or [])])
        try:
            env = _propagated_env(getattr(server, "env", None))
            if env is not None and env != getattr(server, "env", None):
                server = server.model_copy(update={"env": env})
        except Exception:
            pass
        async with original(server, *args, **kwargs) as streams:
            try:
                read = streams[0]
                if len(_stdio_sources) > 256:
                    _stdio_sources.clear()
                _stdio_sources[id(read)] = (read, command)
            except Exception:
                pass
            try:
                yield streams
            finally:
                _stdio_sources.pop(id(streams[0]), None)

    setattr(stdio_client, _MARK, True)
    mod.stdio_client = stdio_client  # type: ignore[attr-defined]
    return True


def _server_name(session: Any) -> str | None:
    try:
        info = session.server_info
        name = getattr(info, "name", None)
        return str(name) if name else None
    except Exception:
        return None


def _patch_mcp_session(mod: ModuleType) -> bool:
    cls = getattr(mod, "ClientSession", None)
    if cls is None:
        return False

    def make_init(original: Callable[..., None]) -> Callable[..., None]:
        def __init__(self: Any, read_stream: Any = None, *args: Any, **kwargs: Any) -> None:
            original(self, read_stream, *args, **kwargs)
            try:
                entry = _stdio_sources.get(id(read_stream))
                self._runwatch_source = entry[1] if entry is not None and entry[0] is read_stream else None
            except Exception:
                pass
        return __init__

    def make_adopt(original: Callable[..., None]) -> Callable[..., None]:
        def adopt(self: Any, result: Any) -> None:
            original(self, result)
            try:
                info = self.server_info
                name = _server_name(self) or "mcp-server"
                version = getattr(info, "version", None)
                source = getattr(self, "_runwatch_source", None) or "mcp"
                key = (name, version, source)
                if getattr(self, "_runwatch_reported", None) != key:
                    self._runwatch_reported = key
                    extra: dict[str, Any] = {"name": name, "src": f"mcp+stdio:{source}" if source != "mcp" else source}
                    if version:
                        extra["ver"] = str(version)
                    sdk._submit("plugin.load", sdk._with_context(extra))
            except Exception:
                pass
        return adopt

    def make_call_tool(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call_tool(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            call_id = f"mcp-{os.urandom(8).hex()}"
            try:
                meta = kwargs.get("meta")
                if meta is None or isinstance(meta, Mapping):
                    kwargs["meta"] = {**(meta or {}), META_CALL_ID: call_id}
            except Exception:
                pass
            async with sdk.tool_call(str(name), call_id=call_id, agent=_server_name(self)):
                return await original(self, name, *args, **kwargs)
        return call_tool

    ok = _wrap_method(cls, "call_tool", make_call_tool)
    ok = _wrap_method(cls, "adopt", make_adopt) and ok
    return _wrap_method(cls, "__init__", make_init) and ok


# -- MCP server ------------------------------------------------------------------------------------

_pending_tool: contextvars.ContextVar[tuple[str, str | None, str | None, Any] | None] = contextvars.ContextVar(
    "runwatch_mcp_pending_tool", default=None)


def _request_call_id(params: Any) -> str | None:
    meta = getattr(params, "meta", None)
    value = meta.get(META_CALL_ID) if isinstance(meta, Mapping) else getattr(meta, META_CALL_ID, None)
    return value if isinstance(value, str) and len(value) <= 256 else None


def _patch_mcp_server(mod: ModuleType) -> bool:
    cls = getattr(mod, "MCPServer", None)
    if cls is None:
        return False

    def make_handler(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def _handle_call_tool(self: Any, ctx: Any, params: Any) -> Any:
            name = str(getattr(params, "name", "tool"))
            call_id = _request_call_id(params)
            agent = getattr(self, "name", None)
            fn = None
            try:
                tool = self._tool_manager.get_tool(name)
                fn = getattr(tool, "fn", None)
            except Exception:
                pass
            if fn is None or not _applied.get("mcp.server.mcpserver.utilities.func_metadata"):
                # The tool function cannot be wrapped where it runs: open the call here.
                async with sdk.tool_call(name, call_id=call_id, agent=agent):
                    return await original(self, ctx, params)
            token = _pending_tool.set((name, call_id, agent, fn))
            try:
                return await original(self, ctx, params)
            finally:
                _pending_tool.reset(token)
        return _handle_call_tool

    return _wrap_method(cls, "_handle_call_tool", make_handler)


def _scoped(fn: Callable[..., Any], is_async: bool, name: str, call_id: str | None,
            agent: str | None) -> Callable[..., Any]:
    if is_async:
        async def arun(**kwargs: Any) -> Any:
            async with sdk.tool_call(name, call_id=call_id, agent=agent):
                return await fn(**kwargs)
        return arun

    def run(**kwargs: Any) -> Any:
        with sdk.tool_call(name, call_id=call_id, agent=agent):
            return fn(**kwargs)
    return run


def _patch_mcp_func_metadata(mod: ModuleType) -> bool:
    cls = getattr(mod, "FuncMetadata", None)
    if cls is None:
        return False

    def make_call_fn(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call_fn(self: Any, fn: Callable[..., Any], fn_is_async: bool, *args: Any, **kwargs: Any) -> Any:
            pending = _pending_tool.get()
            if pending is not None and pending[3] is fn and sdk.current_tool_call() is None:
                fn = _scoped(fn, fn_is_async, pending[0], pending[1], pending[2])
            return await original(self, fn, fn_is_async, *args, **kwargs)
        return call_fn

    return _wrap_method(cls, "call_fn", make_call_fn)


# -- OpenAI runners --------------------------------------------------------------------------------


def _patch_openai_responses(mod: ModuleType) -> bool:
    import inspect

    ok = True
    for cls_name in ("ResponsesToolRunner", "AsyncResponsesToolRunner"):
        cls = getattr(mod, cls_name, None)
        if cls is None:
            ok = False
            continue
        original = cls.__dict__.get("_execute_function")
        if original is None:
            ok = False
            continue
        if inspect.iscoroutinefunction(original):
            def make_async(orig: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
                async def _execute_function(self: Any, run: Any, item: Any) -> Any:
                    async with sdk.tool_call(str(item.name), call_id=getattr(item, "call_id", None)):
                        return await orig(self, run, item)
                return _execute_function
            ok = _wrap_method(cls, "_execute_function", make_async) and ok
        else:
            def make_sync(orig: Callable[..., Any]) -> Callable[..., Any]:
                def _execute_function(self: Any, run: Any, item: Any) -> Any:
                    with sdk.tool_call(str(item.name), call_id=getattr(item, "call_id", None)):
                        return orig(self, run, item)
                return _execute_function
            ok = _wrap_method(cls, "_execute_function", make_sync) and ok
    return ok


def _patch_openai_dispatch(mod: ModuleType) -> bool:
    import inspect

    ok = True
    for cls_name in ("ToolDispatcher", "AsyncToolDispatcher"):
        cls = getattr(mod, cls_name, None)
        original = cls.__dict__.get("dispatch") if cls is not None else None
        if original is None:
            ok = False
            continue
        if inspect.iscoroutinefunction(original):
            def make_async(orig: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
                async def dispatch(self: Any, pending: Sequence[Any]) -> Any:
                    call = pending[1]
                    async with sdk.tool_call(str(call.name), call_id=getattr(call, "call_id", None)):
                        return await orig(self, pending)
                return dispatch
            ok = _wrap_method(cls, "dispatch", make_async) and ok
        else:
            def make_sync(orig: Callable[..., Any]) -> Callable[..., Any]:
                def dispatch(self: Any, pending: Sequence[Any]) -> Any:
                    call = pending[1]
                    with sdk.tool_call(str(call.name), call_id=getattr(call, "call_id", None)):
                        return orig(self, pending)
                return dispatch
            ok = _wrap_method(cls, "dispatch", make_sync) and ok
    return ok


PATCHES: dict[str, Callable[[ModuleType], bool]] = {
    "mcp.client.stdio": _patch_mcp_stdio,
    "mcp.client.session": _patch_mcp_session,
    "mcp.server.mcpserver.server": _patch_mcp_server,
    "mcp.server.mcpserver.utilities.func_metadata": _patch_mcp_func_metadata,
    "openai.lib.responses_tool_runner": _patch_openai_responses,
    "openai.lib.streaming.agents._dispatch": _patch_openai_dispatch,
}
"""Module name -> patch applied right after the module executes (True if everything was wrapped)."""


def _apply(name: str, module: ModuleType) -> None:
    with _lock:
        if _applied.get(name):
            return
        try:
            _applied[name] = bool(PATCHES[name](module))
        except Exception:
            _applied[name] = False


class _PostImportFinder:
    """A meta-path finder that finds nothing itself: for :data:`PATCHES` names, wraps the real
    loader's ``exec_module`` (the protocol is duck-typed, so importlib.abc is not needed)."""

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PATCHES or getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy.on = False
        loader = spec.loader if spec is not None else None
        exec_module = getattr(loader, "exec_module", None)
        if spec is None or loader is None or exec_module is None:
            return spec

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _apply(fullname, module)

        try:
            loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        except (AttributeError, TypeError):
            return None  # a loader we cannot wrap: let the import system find it normally
        return spec


_finder: _PostImportFinder | None = None


def install() -> None:
    """Patch what is already imported and catch later imports of the wrapped modules. Idempotent."""
    global _finder
    with _lock:
        if _finder is None:
            _finder = _PostImportFinder()
            sys.meta_path.insert(0, _finder)
    for name in PATCHES:
        module = sys.modules.get(name)
        if module is not None:
            _apply(name, module)


def applied() -> dict[str, bool]:
    """Module name -> whether its patch was applied completely (only modules imported so far)."""
    return dict(_applied)

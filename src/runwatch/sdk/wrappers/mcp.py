"""MCP (``mcp``): the client's ``call_tool``, the stdio transport, and the server's tool functions.

* ``mcp.client.session.ClientSession.call_tool(name, ...)`` runs inside ``tool_call(name,
  call_id=<generated "mcp-..." id>, agent=<server name>, served_by=<server pid>)`` and passes
  the call id to the server in the request's ``_meta`` (key ``autowrap.META_CALL_ID``) so an
  instrumented server opens its call under the same id; ``served_by`` (when
  ``stdio_client`` started the server) lets the join attribute the server process's own
  kernel events to the call, in whatever language the server is written. ``adopt`` (the
  initialize/discover result) reports ``plugin.load`` for the server.
* ``mcp.client.stdio.stdio_client`` gives the server the environment that instruments a
  Python child (unless ``RUNWATCH_PROPAGATE=0``) and remembers its command line and pid.
* ``mcp.server.mcpserver``: the tool function runs inside ``tool_call(name, call_id=<from
  _meta>, agent=<server name>)`` in the thread it runs on.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import Any

from runwatch import sdk
from runwatch.sdk import autowrap
from runwatch.sdk.wrappers.common import mark, marked, wrap_method

# -- client ------------------------------------------------------------------------------------

_stdio_sources: dict[int, tuple[Any, str, int | None]] = {}  # id(read stream) -> (stream, command line, pid)
_spawned: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("runwatch_mcp_spawned", default=None)
_mcp_ids = contextvars.ContextVar[int]("runwatch_mcp_ids", default=0)


def _patch_spawn(mod: ModuleType) -> bool:
    """Record the pid of the process ``stdio_client`` spawns (in the list :data:`_spawned` holds)."""
    original = getattr(mod, "_create_platform_compatible_process", None)
    if original is None:
        return False
    if marked(original):
        return True

    async def spawn(*args: Any, **kwargs: Any) -> Any:
        process = await original(*args, **kwargs)
        pids = _spawned.get()
        pid = getattr(process, "pid", None)
        if pids is not None and isinstance(pid, int):
            pids.append(pid)
        return process

    mod._create_platform_compatible_process = mark(spawn, original)  # type: ignore[attr-defined]
    return True


def patch_stdio(mod: ModuleType) -> bool:
    """Wrap ``stdio_client``: the server's environment, command line and pid."""
    spawn_ok = _patch_spawn(mod)
    original = getattr(mod, "stdio_client", None)
    if original is None:
        return False
    if marked(original):
        return spawn_ok
    import contextlib

    @contextlib.asynccontextmanager
    async def stdio_client(server: Any, *args: Any, **kwargs: Any) -> Any:
        command = " ".join([str(getattr(server, "command", "")), *map(str, getattr(server, "args", []) or [])])
        try:
            env = autowrap._propagated_env(getattr(server, "env", None))
            if env is not None and env != getattr(server, "env", None):
                server = server.model_copy(update={"env": env})
        except Exception:
            pass
        cm = original(server, *args, **kwargs)
        pids: list[int] = []  # entering spawns the server in this context: the spawn appends its pid
        token = _spawned.set(pids)
        try:
            streams = await cm.__aenter__()
        finally:
            _spawned.reset(token)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_exit(cm)
            try:
                read = streams[0]
                if len(_stdio_sources) > 256:
                    _stdio_sources.clear()
                _stdio_sources[id(read)] = (read, command, pids[0] if len(pids) == 1 else None)
            except Exception:
                pass
            try:
                yield streams
            finally:
                _stdio_sources.pop(id(streams[0]), None)

    mod.stdio_client = mark(stdio_client, original)  # type: ignore[attr-defined]
    return spawn_ok


def _server_name(session: Any) -> str | None:
    try:
        info = session.server_info
        name = getattr(info, "name", None)
        return str(name) if name else None
    except Exception:
        return None


def patch_session(mod: ModuleType) -> bool:
    """Wrap ``ClientSession``: ``call_tool`` in a tool call, ``adopt`` reports the server."""
    cls = getattr(mod, "ClientSession", None)
    if cls is None:
        return False

    def make_init(original: Callable[..., None]) -> Callable[..., None]:
        def __init__(self: Any, read_stream: Any = None, *args: Any, **kwargs: Any) -> None:
            original(self, read_stream, *args, **kwargs)
            try:
                entry = _stdio_sources.get(id(read_stream))
                mine = entry is not None and entry[0] is read_stream
                self._runwatch_source = entry[1] if entry is not None and mine else None
                self._runwatch_server_pid = entry[2] if entry is not None and mine else None
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
                    kwargs["meta"] = {**(meta or {}), autowrap.META_CALL_ID: call_id}
            except Exception:
                pass
            async with sdk.tool_call(str(name), call_id=call_id, agent=_server_name(self),
                                     served_by=getattr(self, "_runwatch_server_pid", None)):
                return await original(self, name, *args, **kwargs)
        return call_tool

    ok = wrap_method(cls, "call_tool", make_call_tool)
    ok = wrap_method(cls, "adopt", make_adopt) and ok
    return wrap_method(cls, "__init__", make_init) and ok


# -- server ------------------------------------------------------------------------------------

_pending_tool: contextvars.ContextVar[tuple[str, str | None, str | None, Any] | None] = contextvars.ContextVar(
    "runwatch_mcp_pending_tool", default=None)


def _request_call_id(params: Any) -> str | None:
    meta = getattr(params, "meta", None)
    value = meta.get(autowrap.META_CALL_ID) if isinstance(meta, Mapping) else getattr(meta, autowrap.META_CALL_ID, None)
    return value if isinstance(value, str) and len(value) <= 256 else None


def patch_server(mod: ModuleType) -> bool:
    """Wrap ``MCPServer._handle_call_tool``: the call id from ``_meta`` for the tool function."""
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
            if fn is None or not autowrap.applied().get("mcp.server.mcpserver.utilities.func_metadata"):
                # The tool function cannot be wrapped where it runs: open the call here.
                async with sdk.tool_call(name, call_id=call_id, agent=agent):
                    return await original(self, ctx, params)
            token = _pending_tool.set((name, call_id, agent, fn))
            try:
                return await original(self, ctx, params)
            finally:
                _pending_tool.reset(token)
        return _handle_call_tool

    return wrap_method(cls, "_handle_call_tool", make_handler)


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


def patch_func_metadata(mod: ModuleType) -> bool:
    """Wrap ``FuncMetadata.call_fn``: the pending tool function runs inside its call."""
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

    return wrap_method(cls, "call_fn", make_call_fn)

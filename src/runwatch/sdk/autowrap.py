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
* **OpenAI Agents SDK** (``agents.tool``): every ``FunctionTool`` invocation (``@function_tool``
  and hand-made ones) runs inside ``tool_call(name, call_id=<the model's call id>,
  agent=<agent name>)``, opened in the thread that runs the function (sync tools run on a
  worker thread).
* **LangChain / LangGraph** (``langchain_core.tools.base.BaseTool``): ``run``/``arun`` (so
  ``invoke``/``ainvoke``, ``@tool`` functions and LangGraph's ``ToolNode``) run inside
  ``tool_call(name, call_id=<the ToolCall's id>)``, opened in the thread that runs the tool.

The patches live in :mod:`runwatch.sdk.wrappers`, one module per library, imported only when
the library is.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
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


# -- environment of child processes ------------------------------------------------------------


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


# -- import hook ---------------------------------------------------------------------------------

_W = "runwatch.sdk.wrappers."
PATCHES: dict[str, str] = {
    "mcp.client.stdio": _W + "mcp:patch_stdio",
    "mcp.client.session": _W + "mcp:patch_session",
    "mcp.server.mcpserver.server": _W + "mcp:patch_server",
    "mcp.server.mcpserver.utilities.func_metadata": _W + "mcp:patch_func_metadata",
    "openai.lib.responses_tool_runner": _W + "openai_runners:patch_responses",
    "openai.lib.streaming.agents._dispatch": _W + "openai_runners:patch_dispatch",
    "agents.tool": _W + "openai_agents:patch_tool",
    "agents.run_internal.tool_execution": _W + "openai_agents:patch_tool_execution",
    "langchain_core.tools.base": _W + "langchain:patch_base_tool",
}
"""Module name -> ``"module:function"`` of the patch applied right after that module executes
(the patch returns True if everything was wrapped). The patch modules are imported only then,
so an interpreter that imports none of these libraries loads none of them."""


def _apply(name: str, module: ModuleType) -> None:
    with _lock:
        if _applied.get(name):
            return
        try:
            import importlib

            where, _, func = PATCHES[name].partition(":")
            patch: Callable[[ModuleType], bool] = getattr(importlib.import_module(where), func)
            _applied[name] = bool(patch(module))
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

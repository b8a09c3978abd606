"""OpenAI Agents SDK (``agents``): every function-tool invocation inside its tool call.

The SDK runs a turn's function tools as concurrent tasks, each through
``agents.tool._invoke_function_tool_with_metadata(function_tool=, context=, arguments=)``
(``agents.run_internal.tool_execution`` imports it by name, so both bindings are patched).
The wrapper opens ``tool_call(name, call_id=context.tool_call_id, agent=<agent name>,
args=<the JSON arguments>)``. An async tool's code runs in the task, so the call opens there;
a sync ``@function_tool`` runs on a worker thread (``asyncio.to_thread`` in ``agents.tool``),
so the call is handed off (:func:`~runwatch.sdk.wrappers.common.handed_off`) and opened in
that thread by the ``to_thread`` of ``agents.tool``'s own ``asyncio`` binding (only that
module's; the ``asyncio`` module itself is not changed).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from runwatch import sdk
from runwatch.sdk.wrappers.common import handed_off, json_args, mark, marked, opt_str, take_handoff

_INVOKE = "_invoke_function_tool_with_metadata"
_SYNC_MARKER = "__agents_sync_function_tool__"  # set by agents.tool on invokers of sync functions


def _make_invoke(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def invoke(*args: Any, **kwargs: Any) -> Any:
        tool, ctx = kwargs.get("function_tool"), kwargs.get("context")
        name = opt_str(getattr(ctx, "tool_name", None)) or opt_str(getattr(tool, "name", None)) or "tool"
        call_id = opt_str(getattr(ctx, "tool_call_id", None))
        agent = opt_str(getattr(getattr(ctx, "agent", None), "name", None))
        arguments = json_args(kwargs.get("arguments"))
        if getattr(getattr(tool, "on_invoke_tool", None), _SYNC_MARKER, False):
            with handed_off(name, call_id, agent, arguments):
                return await original(*args, **kwargs)
        async with sdk.tool_call(name, call_id=call_id, agent=agent, args=arguments):
            return await original(*args, **kwargs)
    return mark(invoke, original)


class _AsyncioView:
    """``asyncio`` as ``agents.tool`` sees it: the same module, but ``to_thread`` takes a hand-off."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._real, attr)

    async def to_thread(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``asyncio.to_thread``, running ``func`` inside the call handed off to it, if any."""
        return await self._real.to_thread(take_handoff(func), *args, **kwargs)


def patch_tool(mod: ModuleType) -> bool:
    """Wrap ``agents.tool``'s function-tool invocation and its worker-thread dispatch."""
    original = getattr(mod, _INVOKE, None)
    real_asyncio = getattr(mod, "asyncio", None)
    if original is None or not isinstance(real_asyncio, (ModuleType, _AsyncioView)):
        return False
    if not marked(original):
        setattr(mod, _INVOKE, _make_invoke(original))
    if isinstance(real_asyncio, ModuleType):
        mod.asyncio = _AsyncioView(real_asyncio)  # type: ignore[attr-defined]
    return True


def patch_tool_execution(mod: ModuleType) -> bool:
    """Point ``agents.run_internal.tool_execution``'s imported invocation at the wrapped one."""
    current = getattr(mod, _INVOKE, None)
    if current is None:
        return False
    if marked(current):
        return True
    tool_mod = sys.modules.get("agents.tool")
    wrapped = getattr(tool_mod, _INVOKE, None) if tool_mod is not None else None
    if wrapped is None or not marked(wrapped) or getattr(wrapped, "__wrapped__", None) is not current:
        wrapped = _make_invoke(current)
    setattr(mod, _INVOKE, wrapped)
    return True

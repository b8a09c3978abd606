"""LangChain / LangGraph (``langchain_core``): every ``BaseTool`` run inside its tool call.

``BaseTool.invoke``/``ainvoke`` (``@tool`` functions, ``StructuredTool``, ``Tool``, and
LangGraph's ``ToolNode``, which calls them from a thread pool or from asyncio tasks) end in
``BaseTool.run``/``arun``, which are wrapped: ``tool_call(name, call_id=<tool_call_id: the
ToolCall's id when the input was one>, args=<the input dict>)``. ``run`` executes the tool in
the calling thread, so the call opens there. ``arun`` of a tool with async code runs it in
the task; of a sync-only tool, ``BaseTool._arun`` runs ``_run`` through ``run_in_executor``
on a worker thread, so the call is handed off and opened in that thread by the patched
``run_in_executor`` binding of ``langchain_core.tools.base``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from runwatch import sdk
from runwatch.sdk.wrappers.common import handed_off, mark, marked, opt_str, take_handoff, wrap_method


def _call(tool: Any, tool_input: Any, kwargs: dict[str, Any]) -> tuple[str, str | None, Any]:
    name = opt_str(getattr(tool, "name", None)) or type(tool).__name__
    return name, opt_str(kwargs.get("tool_call_id")), tool_input if isinstance(tool_input, dict) else None


def _runs_on_worker(tool: Any, base: Any) -> bool:
    """Whether ``arun`` of ``tool`` runs its code through ``BaseTool._arun`` (sync-only tools)."""
    arun = type(tool)._arun
    if arun is base._arun:
        return True
    delegating = []  # these override _arun only to await their coroutine, if they have one
    for module, cls_name in (("langchain_core.tools.structured", "StructuredTool"),
                             ("langchain_core.tools.simple", "Tool")):
        cls = getattr(sys.modules.get(module), cls_name, None)
        if cls is not None:
            delegating.append(cls.__dict__.get("_arun"))
    return arun in delegating and getattr(tool, "coroutine", False) is None


def patch_base_tool(mod: ModuleType) -> bool:
    """Wrap ``BaseTool.run``/``arun`` and the module's ``run_in_executor``."""
    base = getattr(mod, "BaseTool", None)
    executor = getattr(mod, "run_in_executor", None)
    if base is None or executor is None:
        return False

    def make_run(original: Callable[..., Any]) -> Callable[..., Any]:
        def run(self: Any, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
            name, call_id, arguments = _call(self, tool_input, kwargs)
            with sdk.tool_call(name, call_id=call_id, args=arguments):
                return original(self, tool_input, *args, **kwargs)
        return run

    def make_arun(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def arun(self: Any, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
            name, call_id, arguments = _call(self, tool_input, kwargs)
            if _runs_on_worker(self, base):
                with handed_off(name, call_id, None, arguments):
                    return await original(self, tool_input, *args, **kwargs)
            async with sdk.tool_call(name, call_id=call_id, args=arguments):
                return await original(self, tool_input, *args, **kwargs)
        return arun

    if not marked(executor):
        async def run_in_executor(executor_or_config: Any, func: Callable[..., Any], *args: Any,
                                  **kwargs: Any) -> Any:
            return await executor(executor_or_config, take_handoff(func), *args, **kwargs)
        mod.run_in_executor = mark(run_in_executor, executor)  # type: ignore[attr-defined]
    ok = wrap_method(base, "run", make_run)
    return wrap_method(base, "arun", make_arun) and ok

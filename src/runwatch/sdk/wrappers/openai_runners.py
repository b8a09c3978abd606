"""OpenAI client (``openai``): the tool runners that execute function tools themselves.

``openai.lib.responses_tool_runner`` (``ResponsesToolRunner``, ``AsyncResponsesToolRunner``)
and ``openai.lib.streaming.agents._dispatch`` (``ToolDispatcher``, ``AsyncToolDispatcher``):
each function-tool execution runs inside ``tool_call(name, call_id=<the call_id>)``.
Chat-completions tool calls are executed by the agent's own loop (see
:func:`runwatch.sdk.autowrap.dispatch_tool_calls`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

from runwatch import sdk
from runwatch.sdk.wrappers.common import wrap_method


def patch_responses(mod: ModuleType) -> bool:
    """Wrap the (async) responses tool runner's ``_execute_function``."""
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
            ok = wrap_method(cls, "_execute_function", make_async) and ok
        else:
            def make_sync(orig: Callable[..., Any]) -> Callable[..., Any]:
                def _execute_function(self: Any, run: Any, item: Any) -> Any:
                    with sdk.tool_call(str(item.name), call_id=getattr(item, "call_id", None)):
                        return orig(self, run, item)
                return _execute_function
            ok = wrap_method(cls, "_execute_function", make_sync) and ok
    return ok


def patch_dispatch(mod: ModuleType) -> bool:
    """Wrap the (async) streaming agents tool dispatcher's ``dispatch``."""
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
            ok = wrap_method(cls, "dispatch", make_async) and ok
        else:
            def make_sync(orig: Callable[..., Any]) -> Callable[..., Any]:
                def dispatch(self: Any, pending: Sequence[Any]) -> Any:
                    call = pending[1]
                    with sdk.tool_call(str(call.name), call_id=getattr(call, "call_id", None)):
                        return orig(self, pending)
                return dispatch
            ok = wrap_method(cls, "dispatch", make_sync) and ok
    return ok

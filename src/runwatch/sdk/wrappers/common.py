"""What the library patches share: one-time method wrapping and the hand-off of a call to a worker thread.

Hand-off. The kernel join attributes events by thread, so a tool call must be opened in the
thread that runs the tool's code. Frameworks that run a sync tool on a worker thread
(``asyncio.to_thread``, ``loop.run_in_executor``) decide that in code the patches cannot
reach; there the patch opens no call itself but :func:`handed_off` records the pending call
in the task's context, and the patched thread dispatch runs the function through
:func:`take_handoff`, which opens the call in the worker. A hand-off is taken at most once
(a nested ``to_thread`` inside the tool is not the tool). Contexts are per task, so
parallel calls each hand off their own call.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from runwatch import sdk

MARK = "__runwatch_wrapped__"
W = TypeVar("W", bound=Callable[..., Any])


def marked(obj: Any) -> bool:
    """Whether ``obj`` is one of runwatch's wrappers."""
    return bool(getattr(obj, MARK, False))


def mark(wrapper: W, original: Any) -> W:
    """Copy ``original``'s metadata onto ``wrapper`` and mark it as runwatch's; returns ``wrapper``."""
    functools.update_wrapper(wrapper, original)
    setattr(wrapper, MARK, True)
    return wrapper


def wrap_method(cls: Any, attr: str, make: Callable[[Any], Any]) -> bool:
    """Replace ``cls.attr`` by ``make(original)`` once; False if there is no such attribute."""
    original = cls.__dict__.get(attr)
    if original is None:
        return False
    if marked(original):
        return True
    setattr(cls, attr, mark(make(original), original))
    return True


def json_args(raw: Any) -> dict[str, Any] | None:
    """Tool arguments as a dict (from a dict or a JSON object text), or None."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.strip():
        with contextlib.suppress(ValueError):
            value = json.loads(raw)
            return value if isinstance(value, dict) else None
    return None


class _Handoff:
    __slots__ = ("agent", "args", "call_id", "name", "taken")

    def __init__(self, name: str, call_id: str | None, agent: str | None, args: Any) -> None:
        self.name, self.call_id, self.agent, self.args, self.taken = name, call_id, agent, args, False


_handoff: contextvars.ContextVar[_Handoff | None] = contextvars.ContextVar("runwatch_handoff", default=None)


@contextlib.contextmanager
def handed_off(name: str, call_id: str | None, agent: str | None = None, args: Any = None) -> Iterator[None]:
    """Within this block, the first function run through :func:`take_handoff` runs inside the call."""
    token = _handoff.set(_Handoff(name, call_id, agent, args))
    try:
        yield
    finally:
        _handoff.reset(token)


def take_handoff(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, or (once per hand-off, when one is pending here) ``fn`` inside the handed-off call.

    Call it where the function is handed to the worker (in the task); the call opens in the
    thread that runs the returned function.
    """
    pending = _handoff.get()
    if pending is None or pending.taken:
        return fn
    pending.taken = True

    def in_call(*args: Any, **kwargs: Any) -> Any:
        with sdk.tool_call(pending.name, call_id=pending.call_id, agent=pending.agent, args=pending.args):
            return fn(*args, **kwargs)
    return in_call


def opt_str(value: Any) -> str | None:
    """``value`` if it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None

"""Human rendering of events (``runwatch events``, live console output).

One line per event::

    14:03:07.412 process.exec  agent (runc) 4242 /usr/bin/curl  curl -s http://x  <- /bin/sh

Text from events (paths, command lines) is never interpreted as rich markup, and its control
characters are shown escaped.
"""

from __future__ import annotations

import errno
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TextIO

from rich.console import Console
from rich.text import Text

from runwatch.events import Event
from runwatch.outputs.base import register_output
from runwatch.textsafe import printable

_KIND_STYLE = {
    "process": "cyan",
    "net": "magenta",
    "dns": "magenta",
    "file": "yellow",
    "priv": "bold red",
    "tool": "green",
    "model": "green",
    "plugin": "green",
    "secret": "bold yellow",
    "policy": "bold blue",
    "sensor": "dim",
}


def format_time(t_ns: int) -> str:
    """Local wall-clock time ``HH:MM:SS.mmm`` of a ns-since-epoch timestamp."""
    secs, ns = divmod(t_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{ns // 1_000_000:03d}"


def _result(code: int | None) -> str:
    """``ok`` for 0, the errno name for -errno, '' when unknown."""
    if code is None:
        return ""
    if code == 0:
        return "ok"
    name = errno.errorcode.get(-code) if code < 0 else None
    return name or str(code)


def _endpoint(ip: str | None, port: int | None) -> str:
    host = ip or "?"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _priv_summary(e: Event) -> str:
    p = e.priv
    if p is None:
        return ""
    parts = [p.op]
    if e.kind in ("priv.setuid", "priv.setgid"):
        for label, value in (("uid", p.uid), ("euid", p.euid), ("gid", p.gid), ("egid", p.egid)):
            if value is not None:
                parts.append(f"{label}={value}")
    elif e.kind == "priv.capset":
        for label, value in (
            ("eff", p.cap_effective),
            ("prm", p.cap_permitted),
            ("inh", p.cap_inheritable),
        ):
            if value is not None:
                parts.append(f"{label}={value:#x}")
    elif e.kind == "priv.mount":
        parts.append(f"{p.source or '-'} -> {p.target or '-'}")
        if p.fstype:
            parts.append(f"({p.fstype})")
        if p.mount_flags:
            parts.append(f"flags={p.mount_flags:#x}")
    elif e.kind == "priv.ptrace":
        if p.request is not None:
            parts.append(f"request={p.request}")
        if p.target_pid is not None:
            parts.append(f"target={p.target_pid}")
    elif p.ns_flags is not None:
        parts.append(f"flags={p.ns_flags:#x}")
    if p.result:
        parts.append(_result(p.result))
    return " ".join(parts)


_CMDLINE_MAX = 160
_ANCESTRY_SHOWN = 4


def _one_line(text: str, limit: int) -> str:
    """Control characters shown escaped and long text cut with an ellipsis, for one-line display."""
    flat = printable(text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def event_summary(event: Event) -> str:
    """The plain one-line, kind-specific detail of an event (no time, pid or container)."""
    e = event
    kind = e.kind
    if kind == "process.exec":
        return _one_line(e.cmdline or e.exe, _CMDLINE_MAX)
    if kind == "process.fork":
        return f"child {e.child_pid}" if e.child_pid is not None else "child ?"
    if kind == "process.exit":
        if e.signal:
            return f"killed by {_signal_name(e.signal)}"
        return f"exit {e.exit_code}" if e.exit_code is not None else "exit"
    if kind.startswith("net.") and e.net is not None:
        n = e.net
        if kind == "net.accept":
            text = f"{n.proto} {_endpoint(n.src_ip, n.src_port)} -> {_endpoint(n.dst_ip, n.dst_port)}"
        else:
            text = f"{n.proto} {_endpoint(n.dst_ip, n.dst_port)}"
        res = _result(n.result)
        return f"{text} {res}" if res else text
    if kind == "dns.query" and e.dns is not None:
        return f"{e.dns.name} {e.dns.qtype}" if e.dns.qtype else e.dns.name
    if kind.startswith("file.") and e.file is not None:
        f = e.file
        if kind == "file.rename":
            text = f"{f.path} -> {f.new_path}"
        elif kind == "file.memfd":
            text = f"memfd:{f.name}" if f.name else f.path
        else:
            text = f.path
        return f"{text} ({f.intent})" if f.intent else text
    if kind.startswith("priv."):
        return _priv_summary(e)
    if e.tool_call is not None and kind.startswith("tool."):
        tc = e.tool_call
        who = f" by {tc.agent}" if tc.agent else ""
        return f"{tc.name}{who}" + (f" [{tc.call_id}]" if tc.call_id else "")
    attrs = e.attrs or {}
    for key in ("message", "name"):
        if key in attrs:
            return str(attrs[key])
    if e.ai is not None:
        for value in (e.ai.model, e.ai.plugin, e.ai.secret):
            if value is not None:
                return value
    return str(attrs["decision"]) if "decision" in attrs else ""


def _container_label(event: Event) -> str:
    c = event.container
    if c is None:
        return "host"
    return f"{c.name or c.id[:12]} ({c.runtime})"


def line_parts(event: Event) -> list[tuple[str, str]]:
    """One event's line as (text, style) parts, the text made printable (control characters
    from the workload shown escaped, see :mod:`runwatch.textsafe`)."""
    kind_style = _KIND_STYLE.get(event.kind.split(".", 1)[0], "")
    parts: list[tuple[str, str]] = []

    def add(text: str, style: str = "") -> None:
        parts.append((printable(text), style))

    add(format_time(event.time), "dim")
    add(" ")
    add(f"{event.kind:<14}", kind_style)
    add(" ")
    add(_container_label(event), "blue")
    add(f" {event.pid} ")
    add(event.exe or event.comm or "?", "bold")
    detail = event_summary(event)
    if detail:
        add("  ")
        add(detail)
    if event.tool_call is not None and not event.kind.startswith("tool."):
        add(f"  [tool {event.tool_call.name}]", "green")
    elif event.unattested:
        add("  [outside any tool call]", "yellow")
    if event.ancestry:
        shown = event.ancestry[:_ANCESTRY_SHOWN]
        more = len(event.ancestry) - len(shown)
        add("  <- " + " <- ".join(shown) + (f" <- (+{more})" if more > 0 else ""), "dim")
    return parts


def render_line(event: Event) -> Text:
    """The rich ``Text`` for one event (styles only; content is never parsed as markup)."""
    line = Text()
    for text, style in line_parts(event):
        line.append(text, style=style)
    return line


def plain_line(event: Event) -> str:
    """The text of :func:`render_line` without styles (for output that is not a terminal)."""
    return "".join(text for text, _ in line_parts(event))


def render_events(events: Iterable[Event], console: Console) -> int:
    """Print one line per event to ``console``; returns the number of lines printed."""
    count = 0
    for event in events:
        console.print(render_line(event), soft_wrap=True, highlight=False)
        count += 1
    return count


class TextOutput:
    """Live human-readable output (default: standard error), one line per event."""

    name = "text"

    def __init__(self, stream: TextIO | None = None, *, console: Console | None = None) -> None:
        self._console = console or Console(file=stream or sys.stderr, highlight=False)

    def open(self) -> None:
        """Nothing to open: the console's stream belongs to the caller."""

    def write(self, events: Sequence[Event]) -> None:
        """Render and print the events."""
        render_events(events, self._console)

    def flush(self) -> None:
        """Flush the console's stream."""
        self._console.file.flush()

    def reopen(self) -> None:
        """Nothing to reopen for a console."""

    def close(self) -> None:
        """Flush the console's stream (never closes it)."""
        self._console.file.flush()


register_output("text", TextOutput)

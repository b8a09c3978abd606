"""The report's answers in plain sentences, shared by every renderer (which escapes them)."""

from __future__ import annotations

from runwatch.report.model import Egress, Report, SecretRead
from runwatch.report.timearg import iso

SHOWN_PROCESSES = 500
"""Process-tree rows a document shows (depth first; the JSON model keeps every process)."""
SHOWN_CALLS = 200
"""Tool calls a document shows with their events (the JSON model keeps every call)."""
SHOWN_SECRET_DETAILS = 100
"""Secret reads a document lists the following outbound events of."""


def more(left_out: int, what: str) -> str:
    """The line saying how many rows a document left out, or ``""``."""
    return f"{left_out} more {what} left out here (all are in --format json)." if left_out > 0 else ""


BYTES_UNKNOWN = "bytes sent: unknown (the events record connections and datagrams, not byte counts)"


def call_label(call_id: str | None, tool: str | None) -> str:
    """``tool [call_id]``, or ``outside any tool call``."""
    if tool is None:
        return "outside any tool call"
    return f"{tool} [{call_id}]" if call_id else tool


def proc_label(exe: str, pid: int) -> str:
    """``EXE (pid N)``, or ``pid N`` when the event names no executable (an SDK event)."""
    return f"{exe} (pid {pid})" if exe else f"pid {pid}"


def _first_out(s: SecretRead) -> Egress | None:
    return next((x for x in s.egress if x.kind != "dns.query" and x.connected), None)


def answers(report: Report) -> list[str]:
    """Did data leave, where, when, by which tool call: one sentence per secret read (or one
    saying none was read)."""
    if not report.secrets:
        out = "no secret was read in this window"
        sent = [d for d in report.destinations if d.kind != "dns.query"]
        if sent:
            out += f"; the workload sent to {len(sent)} destination(s): " + ", ".join(d.destination for d in sent[:5])
        return [out]
    lines = []
    for s in report.secrets:
        head = (f"{s.secret} ({s.how}) read at {iso(s.time)} by {proc_label(s.exe, s.pid)} in "
                f"{call_label(s.call_id, s.tool)}")
        first = _first_out(s)
        if first is None:
            lines.append(f"{head}; no connection to another host followed")
            continue
        named = f" ({first.name})" if first.name else ""
        more = s.egress_total - 1
        tail = f", and {more} more outbound event(s) after it" if more > 0 else ""
        lines.append(f"{head}; then data may have left: {first.proto or ''} {first.destination}{named} at "
                     f"{iso(first.time)} by {proc_label(first.exe, first.pid)} in "
                     f"{call_label(first.call_id, first.tool)}{tail}; {BYTES_UNKNOWN}")
    return lines

"""The report as Markdown: headings and tables, every workload string escaped."""

from __future__ import annotations

from collections.abc import Sequence

from runwatch.report.escape import md
from runwatch.report.findings import (
    BYTES_UNKNOWN,
    SHOWN_CALLS,
    SHOWN_PROCESSES,
    SHOWN_SECRET_DETAILS,
    answers,
    call_label,
    more,
    proc_label,
)
from runwatch.report.model import Report
from runwatch.report.proctree import depth_first
from runwatch.report.timearg import iso


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(md(c) if c is not None else "-" for c in row) + " |" for row in rows]
    return [*out, ""]


def _when(t: int | None) -> str:
    return iso(t) if t is not None else "-"


def _window(r: Report) -> str:
    since = iso(r.since_ns) if r.since_ns is not None else "the first event"
    until = iso(r.until_ns) if r.until_ns is not None else "the last event"
    return f"{since} to {until}"


def render(r: Report) -> str:
    """The whole report as one Markdown document."""
    out = [f"# runwatch report: {md(r.workload)}", "",
           f"Store `{md(r.db)}`, window {_window(r)}; events {_when(r.first_ns)} to {_when(r.last_ns)}; "
           f"generated {iso(r.generated_ns)}.", "",
           "## Did data leave?", "",
           "**Yes, data may have left.**" if r.data_left
           else "**No connection to another host followed a secret read.**",
           ""]
    out += [f"- {md(line)}" for line in answers(r)] + [""]
    c = r.counts
    out += ["## Summary", ""]
    out += _table(["events", "execs", "processes", "tool calls", "secret reads", "outbound", "dns", "decisions",
                   "alerts", "unattested"],
                  [[c.events, c.execs, c.processes, c.tool_calls, c.secret_reads, c.egress, c.dns, c.decisions,
                    c.alerts, c.unattested]])
    out += ["## Identity", ""]
    out += _table(["container", "name", "pod", "image", "SPIFFE id", "owner", "controller", "role", "events"],
                  [[i.id[:12], i.name, f"{i.namespace}/{i.pod}" if i.namespace and i.pod else i.pod,
                    i.image, i.spiffe_id, i.owner, i.controller, i.role, i.events] for i in r.containers])
    out += ["## Secrets touched", "", "Names and paths only: the store never holds a secret's value.", ""]
    if r.secrets:
        out += _table(["time", "secret", "how", "seen by", "process", "tool call", "outbound after", "data left"],
                      [[iso(s.time), s.secret, s.how, ", ".join(s.sources), proc_label(s.exe, s.pid),
                     call_label(s.call_id, s.tool),
                        s.egress_total, "yes" if s.data_left else "no"] for s in r.secrets])
        for s in r.secrets[:SHOWN_SECRET_DETAILS]:
            if not s.egress:
                continue
            out += [f"After `{md(s.secret)}` at {iso(s.time)}:", ""]
            out += _table(["time", "kind", "destination", "name", "connected", "process", "tool call", "bytes"],
                          [[iso(x.time), x.kind, x.destination, x.name, "yes" if x.connected else f"no ({x.result})",
                            proc_label(x.exe, x.pid), call_label(x.call_id, x.tool), "unknown"] for x in s.egress])
    else:
        out += ["None.", ""]
    out += ["## Outbound destinations", "", f"{BYTES_UNKNOWN[0].upper()}{BYTES_UNKNOWN[1:]}.", ""]
    out += _table(["destination", "kind", "name", "count", "failed", "first", "last", "tools", "after a secret read"],
                  [[d.destination, d.kind, d.name, d.count, d.failed, iso(d.first_ns), iso(d.last_ns),
                    ", ".join(d.tools) or None, "yes" if d.after_secret else "no"] for d in r.destinations]) \
        if r.destinations else ["None.", ""]
    out += ["## Prompt routes", ""]
    out += _table(["route", "first", "model calls", "tool calls"],
                  [[x.route, iso(x.first_ns), x.model_calls, ", ".join(x.tool_calls) or None] for x in r.routes]) \
        if r.routes else ["None.", ""]
    out += ["## Tool calls", ""]
    if not r.tool_calls:
        out += ["None.", ""]
    for t in r.tool_calls[:SHOWN_CALLS]:
        took = f"{(t.end_ns - t.start_ns) / 1e6:.1f} ms" if t.start_ns is not None and t.end_ns is not None else "?"
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.kinds.items())) or "no kernel events"
        out += [f"### {md(t.name)} \\[{md(t.call_id)}\\]", "",
                f"Agent {md(t.agent or '?')}, route {md(t.route or '-')}, started {_when(t.start_ns)}, took {took}, "
                f"status {md(t.status or '?')}" + (f", verdict {md(t.verdict)}" if t.verdict else "") +
                f"; {md(kinds)}.", ""]
        if t.events:
            out += _table(["time", "kind", "what", "pid"], [[iso(e.time), e.kind, e.text, e.pid] for e in t.events])
    if more(len(r.tool_calls) - SHOWN_CALLS, "tool calls"):
        out += [more(len(r.tool_calls) - SHOWN_CALLS, "tool calls"), ""]
    out += ["## Process tree", ""]
    if not r.processes:
        out += ["No process was started in this window.", ""]
    rows = depth_first(r.processes)
    for p, depth in rows[:SHOWN_PROCESSES]:
        ran = " (forked, no exec)" if p.execs == 0 else ""
        call = f" in {md(call_label(p.call_id, p.tool))}" if p.tool else ""
        up = f" <- {md(' <- '.join(p.ancestry[:4]))}" if depth == 0 and p.ancestry else ""
        out.append(f"{'  ' * depth}- pid {p.pid} `{md(p.exe)}`{ran}: {md(p.cmdline)}{call}{up}")
    if len(rows) > SHOWN_PROCESSES:
        out += ["", more(len(rows) - SHOWN_PROCESSES, "processes")]
    out += ["", "## Policy decisions", ""]
    out += _table(["time", "verdict", "layer", "target", "policy", "rule", "reason", "tool call"],
                  [[iso(d.time), d.verdict, d.layer, d.target, d.policy, d.rule, d.reason,
                    call_label(d.call_id, d.tool)] for d in r.decisions]) if r.decisions else ["None.", ""]
    out += ["## Alerts", ""]
    out += _table(["time", "severity", "rule", "count", "tool call", "what"],
                  [[iso(a.time), a.severity, a.rule, a.count,
                    call_label(a.tool_call.call_id, a.tool_call.name) if a.tool_call else None, a.output]
                   for a in r.alerts]) if r.alerts else ["None.", ""]
    out += ["## Timeline", ""]
    t0 = r.first_ns or 0
    out += _table(["time", "+s", "kind", "what", "tool call"],
                  [[iso(e.time), f"{(e.time - t0) / 1e9:.3f}", e.kind, e.text,
                    call_label(e.call_id, e.tool) if e.tool else ("outside any tool call" if e.unattested else None)]
                   for e in r.timeline])
    if r.timeline_omitted:
        out += [f"{r.timeline_omitted} more timeline entries left out (narrow --since/--until).", ""]
    return "\n".join(out).rstrip() + "\n"

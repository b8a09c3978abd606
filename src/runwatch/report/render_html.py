"""The report as one self-contained HTML file: inline CSS, inline SVG, no script at all.

Every string from the workload goes through :func:`runwatch.report.escape.h`, and the page's
Content-Security-Policy allows no script and no outside resource, so a hostile command line
or path is shown as text and nothing in it runs or loads.
"""

from __future__ import annotations

from collections.abc import Sequence

from runwatch.report import svg
from runwatch.report.escape import h
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
from runwatch.report.timearg import iso

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde}
h3{font-size:15px;margin:16px 0 4px}.meta{color:#5a6270}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d8dbe2;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f4f7}td.n{text-align:right}code,td.m{font-family:ui-monospace,monospace;font-size:12px}
.verdict{padding:10px 14px;border-radius:6px;margin:8px 0}.verdict.left{background:#fde8e8;border:1px solid #e0a0a0}
.verdict.kept{background:#e8f5ea;border:1px solid #9fd0a8}
details{margin:4px 0}summary{cursor:pointer}
svg text{font:12px ui-monospace,monospace;fill:#1d2330}
.proc rect{fill:#eef1f8;stroke:#8b93a8}.proc.in-call rect{fill:#e3f0ff;stroke:#3b72c4}
.edge{fill:none;stroke:#8b93a8}.axis{stroke:#8b93a8}.tick{fill:#5a6270}
.mark.call rect{fill:#7aa6e0}.mark.secret circle{fill:#d32f2f}.mark.egress circle{fill:#ef8a17}
.mark.dns circle{fill:#c9a227}.mark.exec circle{fill:#3b72c4}.mark.decision circle{fill:#6d4bb5}
.mark.alert circle{fill:#7a0000}
"""


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], mono: Sequence[int] = ()) -> str:
    if not rows:
        return "<p>None.</p>"
    out = ["<table><thead><tr>", *(f"<th>{h(c)}</th>" for c in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, c in enumerate(row):
            cls = ' class="n"' if isinstance(c, int) and not isinstance(c, bool) else ' class="m"' if i in mono else ""
            out.append(f"<td{cls}>{h(c) if c is not None else '-'}</td>")
        out.append("</tr>")
    return "".join(out) + "</tbody></table>"


def _when(t: int | None) -> str:
    return iso(t) if t is not None else "-"


def render(r: Report) -> str:
    """The whole report as one HTML document."""
    c = r.counts
    since = iso(r.since_ns) if r.since_ns is not None else "the first event"
    until = iso(r.until_ns) if r.until_ns is not None else "the last event"
    left = r.data_left
    body = [f"<h1>runwatch report: {h(r.workload)}</h1>",
            f'<p class="meta">Store <code>{h(r.db)}</code>, window {h(since)} to {h(until)}; events '
            f"{h(_when(r.first_ns))} to {h(_when(r.last_ns))}; generated {h(iso(r.generated_ns))}.</p>",
            "<h2>Did data leave?</h2>",
            f'<div class="verdict {"left" if left else "kept"}"><strong>'
            f"{'Yes, data may have left.' if left else 'No connection to another host followed a secret read.'}"
            "</strong><ul>" + "".join(f"<li>{h(line)}</li>" for line in answers(r)) + "</ul></div>",
            "<h2>Summary</h2>",
            _table(["events", "execs", "processes", "tool calls", "secret reads", "outbound", "dns", "decisions",
                    "alerts", "unattested"],
                   [[c.events, c.execs, c.processes, c.tool_calls, c.secret_reads, c.egress, c.dns, c.decisions,
                     c.alerts, c.unattested]]),
            "<h2>Identity</h2>",
            _table(["container", "name", "pod", "image", "SPIFFE id", "owner", "controller", "role", "events"],
                   [[i.id[:12], i.name, f"{i.namespace}/{i.pod}" if i.namespace and i.pod else i.pod, i.image,
                     i.spiffe_id, i.owner, i.controller, i.role, i.events] for i in r.containers], mono=(0, 4)),
            "<h2>Timeline</h2>", svg.timeline(r),
            "<h2>Secrets touched</h2><p>Names and paths only: the store never holds a secret's value.</p>",
            _table(["time", "secret", "how", "seen by", "process", "tool call", "outbound after", "data left"],
                   [[iso(s.time), s.secret, s.how, ", ".join(s.sources), proc_label(s.exe, s.pid),
                     call_label(s.call_id, s.tool),
                     s.egress_total, "yes" if s.data_left else "no"] for s in r.secrets], mono=(1, 4))]
    for s in r.secrets[:SHOWN_SECRET_DETAILS]:
        if s.egress:
            body.append(f"<details open><summary>After <code>{h(s.secret)}</code> at {h(iso(s.time))}</summary>"
                        + _table(["time", "kind", "destination", "name", "connected", "process", "tool call", "bytes"],
                                 [[iso(x.time), x.kind, x.destination, x.name,
                                   "yes" if x.connected else f"no ({x.result})", proc_label(x.exe, x.pid),
                                   call_label(x.call_id, x.tool), "unknown"] for x in s.egress], mono=(2, 5))
                        + "</details>")
    body += [f"<h2>Outbound destinations</h2><p>{h(BYTES_UNKNOWN[0].upper() + BYTES_UNKNOWN[1:])}.</p>",
             _table(["destination", "kind", "name", "count", "failed", "first", "last", "tools", "after a secret read"],
                    [[d.destination, d.kind, d.name, d.count, d.failed, iso(d.first_ns), iso(d.last_ns),
                      ", ".join(d.tools) or None, "yes" if d.after_secret else "no"] for d in r.destinations],
                    mono=(0,)),
             "<h2>Prompt routes</h2>",
             _table(["route", "first", "model calls", "tool calls"],
                    [[x.route, iso(x.first_ns), x.model_calls, ", ".join(x.tool_calls) or None] for x in r.routes]),
             "<h2>Tool calls</h2>"]
    if not r.tool_calls:
        body.append("<p>None.</p>")
    for t in r.tool_calls[:SHOWN_CALLS]:
        took = f"{(t.end_ns - t.start_ns) / 1e6:.1f} ms" if t.start_ns is not None and t.end_ns is not None else "?"
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.kinds.items())) or "no kernel events"
        verdict = f", verdict {t.verdict}" if t.verdict else ""
        body.append(f'<details class="call"><summary><strong>{h(t.name)}</strong> [{h(t.call_id)}]: '
                    f"{h(kinds)}</summary><p>Agent {h(t.agent or '?')}, route {h(t.route or '-')}, started "
                    f"{h(_when(t.start_ns))}, took {h(took)}, status {h(t.status or '?')}{h(verdict)}.</p>"
                    + _table(["time", "kind", "what", "pid"], [[iso(e.time), e.kind, e.text, e.pid] for e in t.events],
                             mono=(2,)) + "</details>")
    if len(r.tool_calls) > SHOWN_CALLS:
        body.append(f"<p>{h(more(len(r.tool_calls) - SHOWN_CALLS, 'tool calls'))}</p>")
    left_out = len(r.processes) - SHOWN_PROCESSES
    body += ["<h2>Process tree</h2>", svg.process_tree(r, SHOWN_PROCESSES)
             or "<p>No process was started in this window.</p>", f"<p>{h(more(left_out, 'processes'))}</p>"
             if left_out > 0 else "",
             "<h2>Policy decisions</h2>",
             _table(["time", "verdict", "layer", "target", "policy", "rule", "reason", "tool call"],
                    [[iso(d.time), d.verdict, d.layer, d.target, d.policy, d.rule, d.reason,
                      call_label(d.call_id, d.tool)] for d in r.decisions], mono=(3,)),
             "<h2>Alerts</h2>",
             _table(["time", "severity", "rule", "count", "tool call", "what"],
                    [[iso(a.time), a.severity, a.rule, a.count,
                      call_label(a.tool_call.call_id, a.tool_call.name) if a.tool_call else None, a.output]
                     for a in r.alerts]),
             "<h2>Timeline entries</h2>"]
    t0 = r.first_ns or 0
    body.append(_table(["time", "+s", "kind", "what", "tool call"],
                       [[iso(e.time), f"{(e.time - t0) / 1e9:.3f}", e.kind, e.text,
                         call_label(e.call_id, e.tool) if e.tool else ("outside any tool call" if e.unattested
                                                                       else None)] for e in r.timeline], mono=(3,)))
    if r.timeline_omitted:
        body.append(f"<p>{r.timeline_omitted} more timeline entries left out (narrow --since/--until).</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>runwatch report: {h(r.workload)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "\n</body></html>\n")

"""SVG drawn from the report's data: the process tree and the timeline. No script, no
external reference; every label goes through :func:`runwatch.report.escape.h`.

Each process is one ``<g class="proc">`` (so a reader can count them); each timeline marker
one ``<g class="mark">`` inside its lane, with a ``<title>`` that a browser shows on hover.
"""

from __future__ import annotations

from runwatch.report.escape import h
from runwatch.report.findings import call_label
from runwatch.report.model import Report
from runwatch.report.proctree import depth_first
from runwatch.report.timearg import iso

ROW = 26
INDENT = 22
CHAR_W = 7.0  # monospace 12px, about
LABEL_MAX = 96
MARKS_PER_LANE = 400
LANE_MARKS: tuple[tuple[str, str], ...] = (
    ("secret", "secret reads"), ("egress", "outbound"), ("dns", "dns"), ("exec", "execs"),
    ("decision", "decisions"), ("alert", "alerts"))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def process_tree(r: Report, limit: int | None = None, marked: frozenset[int] = frozenset()) -> str:
    """The process tree, one row per process (the first ``limit``, depth first), parents above
    and left of their children; the processes whose pid is in ``marked`` (alerting ones) get
    the class ``alerting``."""
    rows = depth_first(r.processes)[:limit]
    if not rows:
        return ""
    y_of: dict[int, float] = {}
    x_of: dict[int, float] = {}
    parts: list[str] = []
    width = 0.0
    for n, (p, depth) in enumerate(rows):
        x, y = 8 + depth * INDENT, 6 + n * ROW
        x_of[p.node], y_of[p.node] = x, y
        label = _clip(f"{p.pid}  {p.exe}  {p.cmdline}", LABEL_MAX)
        w = 12 + len(label) * CHAR_W
        width = max(width, x + w + 8)
        cls = ("proc in-call" if p.tool else "proc") + (" alerting" if p.pid in marked else "")
        tip = [f"pid {p.pid} ppid {p.ppid} started {iso(p.start_ns)}", p.cmdline,
               f"execs: {' -> '.join(p.programs) or 'none (forked)'}"]
        if p.tool:
            tip.append(f"in {call_label(p.call_id, p.tool)}")
        if p.parent is not None and p.parent in x_of:
            px, py = x_of[p.parent] + 6, y_of[p.parent] + ROW - 6
            parts.append(f'<path class="edge" d="M{px:.0f},{py:.0f} V{y + 10:.0f} H{x:.0f}"/>')
        tips = "&#10;".join(map(h, tip))
        parts.append(f'<g class="{cls}" data-node="{p.node}" data-pid="{p.pid}"><title>{tips}</title>'
                     f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{ROW - 6}" rx="4"/>'
                     f'<text x="{x + 6:.0f}" y="{y + 14:.0f}">{h(label)}</text></g>')
    height = 12 + len(rows) * ROW
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="proctree" role="img" width="{width:.0f}" '
            f'height="{height}" viewBox="0 0 {width:.0f} {height}"><title>process tree</title>'
            + "".join(parts) + "</svg>")


def timeline(r: Report, width: int = 980) -> str:
    """Tool calls as bars and secret reads, outbound traffic, DNS, execs, decisions and alerts
    as markers, on one time axis from the first event to the last."""
    if r.first_ns is None or r.last_ns is None:
        return ""
    t0, t1 = r.first_ns, r.last_ns
    span = max(t1 - t0, 1)
    left, right = 190, 16
    inner = width - left - right

    def x(t: int) -> float:
        return left + inner * min(max(t - t0, 0), span) / span

    lanes: list[tuple[str, list[str]]] = []
    for call in r.tool_calls:
        start = call.start_ns if call.start_ns is not None else t0
        end = call.end_ns if call.end_ns is not None else t1
        tip = f"{call_label(call.call_id, call.name)} {iso(start)} .. {iso(end)} status {call.status or '?'}"
        bar = (f'<g class="mark call"><title>{h(tip)}</title><rect x="{x(start):.1f}" y="-7" '
               f'width="{max(x(end) - x(start), 2):.1f}" height="14" rx="3"/></g>')
        lanes.append((call_label(call.call_id, call.name), [bar]))
    marks: dict[str, list[tuple[int, str]]] = {m: [] for m, _ in LANE_MARKS}
    for e in r.timeline:
        if e.mark in marks:
            marks[e.mark].append((e.time, f"{iso(e.time)} {e.kind} {e.text} ({call_label(e.call_id, e.tool)})"))
    marks["alert"] = [(a.time, f"{iso(a.time)} {a.severity} {a.rule}: {a.output}") for a in r.alerts]
    marks["secret"] = [(x.time, f"{iso(x.time)} {x.secret} read ({x.how}; {', '.join(x.sources)}) by "
                                f"{x.exe or x.pid} in {call_label(x.call_id, x.tool)}") for x in r.secrets]
    for mark, title in LANE_MARKS:
        found = marks[mark]
        if not found:
            continue
        shown = [f'<g class="mark {mark}"><title>{h(tip)}</title><circle cx="{x(at):.1f}" cy="0" r="5"/></g>'
                 for at, tip in found[:MARKS_PER_LANE]]
        more = f" (+{len(found) - MARKS_PER_LANE})" if len(found) > MARKS_PER_LANE else ""
        lanes.append((f"{title} {len(found)}{more}", shown))
    top = 24
    height = top + len(lanes) * ROW + 10
    parts = [f'<line class="axis" x1="{left}" y1="{top - 6}" x2="{left + inner}" y2="{top - 6}"/>']
    for i in range(6):
        t = t0 + span * i // 5
        parts.append(f'<text class="tick" x="{x(t):.1f}" y="{top - 10}" text-anchor="middle">'
                     f"+{(t - t0) / 1e9:.2f}s</text>")
    for n, (label, items) in enumerate(lanes):
        y = top + n * ROW + ROW / 2
        parts.append(f'<g class="lane" transform="translate(0,{y:.0f})"><text class="lane-label" x="6" y="4">'
                     f"{h(_clip(label, 26))}</text>" + "".join(items) + "</g>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}"><title>timeline from {h(iso(t0))} to '
            f"{h(iso(t1))}</title>" + "".join(parts) + "</svg>")

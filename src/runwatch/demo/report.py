"""What the demo shows, read back from SQLite: tool-attributed timelines, alerts, a summary.

:func:`build_reports` reads each scenario's events (by its containers' ids) and alerts
(by workload, or by the scenario's time window for alerts with no container) from the
store; the ``render_*`` functions print them with rich. Nothing here needs the sensor.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runwatch.alerts.model import Alert
from runwatch.demo.runner import DemoRun, ScenarioRun
from runwatch.events import AiInfo, Event
from runwatch.report.activity import on_timeline, summary
from runwatch.report.activity import runtime_noise as runtime_noise
from runwatch.store.sqlite_read import query_alerts, query_events


@dataclass
class ScenarioReport:
    """One scenario's stored events and alerts, and the summary counts over them."""

    run: ScenarioRun
    events: list[Event] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.run.scenario.name

    @property
    def tool_calls(self) -> list[Event]:
        """The ``tool.start`` events, in time order."""
        return [e for e in self.events if e.kind == "tool.start"]

    @property
    def attributed(self) -> list[Event]:
        """Kernel events the join attributed to a tool call."""
        return [e for e in self.events if e.source != "sdk" and e.tool_call is not None]

    @property
    def unattested(self) -> list[Event]:
        """Kernel events of an instrumented agent outside any tool call."""
        return [e for e in self.events if e.unattested]

    @property
    def rule_ids(self) -> list[str]:
        """Distinct rule ids of the alerts, sorted."""
        return sorted({a.rule for a in self.alerts})

    def starts_by_call_id(self) -> dict[str, Event]:
        """``tool.start`` events keyed by call id."""
        return {e.tool_call.call_id: e for e in self.tool_calls if e.tool_call and e.tool_call.call_id}


def build_reports(run: DemoRun) -> list[ScenarioReport]:
    """One report per scenario run, from ``run.db``."""
    alerts = query_alerts(run.db)
    events = query_events(run.db)
    reports = []
    for r in run.runs:
        rep = ScenarioReport(r)
        ids = {cid for cid, _ in r.result.containers}
        # SDK events whose sender exited before the collector read its cgroup have no container;
        # their pid namespace (unique per container while the demo pins it) still places them.
        pidns = {e.pidns for e in events if e.container is not None and e.container.id in ids and e.vpid == 1}
        rep.events = [e for e in events if (e.container is not None and e.container.id in ids)
                      or (e.container is None and e.source == "sdk" and e.pidns in pidns)]
        rep.alerts = [a for a in alerts if a.workload.id in ids
                      or (a.workload.id is None and r.start_ns <= a.time <= r.end_ns)]
        reports.append(rep)
    return reports


def timeline_events(rep: ScenarioReport) -> list[Event]:
    """The events a timeline shows: AI-layer events and kernel activity, minus bookkeeping."""
    return [e for e in rep.events if on_timeline(e)]


def describe(e: Event) -> str:
    """The kind-specific part of a timeline line, as rich markup (tool calls and plugins bold)."""
    a = e.ai or AiInfo()
    tc = e.tool_call
    if e.kind == "tool.start" and tc is not None:
        route = f"  route={a.route}" if a.route is not None else ""
        return f"[bold]{escape(tc.name)}[/] {escape(f'[{tc.call_id}]')}{escape(route)}"
    if e.kind == "plugin.load":
        sha = (a.sha256 or "")[:12]
        return f"[bold]{escape(str(a.plugin))}[/] " + escape(f"from {a.plugin_source} sha256 {sha}")
    return escape(summary(e))


def render_timeline(rep: ScenarioReport, console: Console, max_lines: int = 60) -> None:
    """Print the tool-attributed timeline: SDK events, then kernel events under their call."""
    events = timeline_events(rep)
    t0 = rep.run.start_ns
    for n, e in enumerate(events):
        if n == max_lines:
            console.print(f"  ... {len(events) - max_lines} more (runwatch events --db <db> --container "
                          f"{rep.run.result.containers[0][1]})")
            break
        when = f"+{(e.time - t0) / 1e9:6.3f}s"
        if e.kind == "tool.start":
            mark = "[cyan]┌[/]"
        elif e.kind == "tool.end":
            mark = "[cyan]└[/]"
        elif e.source != "sdk" and e.tool_call is not None:
            mark = "[cyan]│[/]"
        elif e.unattested:
            mark = "[yellow]![/]"
        else:
            mark = " "
        tail = ""
        if e.source != "sdk" and e.tool_call is not None:
            tail = "  [dim]" + escape(f"<- {e.tool_call.name} [{e.tool_call.call_id}]") + "[/]"
        elif e.unattested:
            tail = "  [yellow](outside any tool call)[/]"
        text = describe(e)
        console.print(f"  {when} {mark} {e.kind:<14} {text}{tail}", soft_wrap=True, highlight=False)


def render_alerts(rep: ScenarioReport, console: Console) -> None:
    """Print the scenario's alerts (rule, severity, tool call, what), or that there were none."""
    if not rep.alerts:
        console.print("  alerts: none")
        return
    console.print(f"  alerts: {len(rep.alerts)}")
    for a in rep.alerts:
        call = f" in {a.tool_call.name} [{a.tool_call.call_id}]" if a.tool_call else ""
        call = escape(call)
        where = a.workload.name or ("host" if a.workload.id is None else a.workload.id)
        count = f" x{a.count}" if a.count > 1 else ""
        what = escape(a.output if len(a.output) <= 110 else a.output[:107] + "...")
        console.print(f"    [red]{a.severity:<8}[/] {a.rule}{count} ({escape(where)}{call}): {what}",
                      soft_wrap=True, highlight=False)


def agentdojo_rows(rep: ScenarioReport) -> list[tuple[str, str, int, int, int, int]]:
    """(suite, task kind, tasks, tool calls, attributed kernel events, alerts) per suite and kind."""
    suites = rep.run.result.details.get("suites", {})
    by_container = {cid: name.removeprefix("demo-agentdojo-") for cid, name in rep.run.result.containers}
    calls: Counter[tuple[str, str]] = Counter()
    attributed: Counter[tuple[str, str]] = Counter()
    alerts: Counter[tuple[str, str]] = Counter()

    def kind_of(call_id: str | None) -> str:
        return "injection" if (call_id or "").startswith("injection_task") else "user"

    for e in rep.events:
        suite = by_container.get(e.container.id if e.container else "", "?")
        if e.kind == "tool.start" and e.tool_call is not None:
            calls[(suite, kind_of(e.tool_call.call_id))] += 1
        elif e.source != "sdk" and e.tool_call is not None:
            attributed[(suite, kind_of(e.tool_call.call_id))] += 1
    for a in rep.alerts:
        suite = by_container.get(a.workload.id or "", "?")
        alerts[(suite, kind_of(a.tool_call.call_id if a.tool_call else None))] += 1
    rows = []
    for suite, counts in suites.items():
        for kind in ("user", "injection"):
            tasks = int(counts.get(kind, {}).get("tasks", 0))
            rows.append((suite, kind, tasks, calls[(suite, kind)], attributed[(suite, kind)], alerts[(suite, kind)]))
    return rows


def render_agentdojo(rep: ScenarioReport, console: Console) -> None:
    """Per suite, benign user tasks against injection tasks: tool calls, attributed events, alerts."""
    table = Table(title="AgentDojo replay (ground truth from AgentDojo, MIT licence)", title_justify="left")
    for col in ("suite", "tasks", "count", "tool calls", "attributed kernel events", "alerts"):
        table.add_column(col, justify="left" if col in ("suite", "tasks") else "right")
    for suite, kind, tasks, calls, attributed, alerts in agentdojo_rows(rep):
        table.add_row(suite, kind, str(tasks), str(calls), str(attributed), str(alerts))
    console.print(table)


def render_summary(reports: list[ScenarioReport], console: Console) -> None:
    """The final table: one row per scenario."""
    table = Table(title="summary", title_justify="left")
    for col in ("scenario", "kind", "events", "tool calls", "attributed", "unattested", "alerts", "rules fired"):
        table.add_column(col, justify="left" if col in ("scenario", "kind", "rules fired") else "right")
    for rep in reports:
        table.add_row(rep.name, rep.run.scenario.label, str(len(rep.events)),
                      str(len(rep.tool_calls)), str(len(rep.attributed)), str(len(rep.unattested)),
                      str(len(rep.alerts)), ", ".join(rep.rule_ids) or "-")
    console.print(table)

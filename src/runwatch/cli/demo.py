"""``runwatch demo``: the bundled AI workloads in real runc containers, watched, then shown."""

from __future__ import annotations

import click
from rich.console import Console
from rich.rule import Rule

from runwatch.cli.common import fail, note
from runwatch.sensors.fallback import NoSourceError
from runwatch.store.sqlite import StoreError


@click.command()
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help="Run only this scenario (repeatable; see --list). Default: all.")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option("--db", default="runwatch-demo.db", show_default=True, metavar="PATH",
              help="SQLite store for the demo's events and alerts (replaced on each run).")
@click.option("--keep", is_flag=True,
              help="Keep each container's config.json and logs under <db>.bundles/ (containers are still removed).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="AgentDojo: replay at most N user tasks and N injection tasks per suite.")
@click.option("--agentdojo", default=None, metavar="PATH",
              help="AgentDojo ground-truth file or directory "
                   "(default: $RUNWATCH_AGENTDOJO, else shared/fixtures/agentdojo above the checkout).")
@click.option("--no-rules", is_flag=True, help="Do not run the detection rules.")
def demo(scenarios: tuple[str, ...], list_only: bool, db: str, keep: bool, limit: int | None,
         agentdojo: str | None, no_rules: bool) -> None:
    """Run the bundled AI workloads under one sensor session and show what each did.

    Each scenario runs in real runc containers with a mounted secret and the runwatch agent
    SDK: a model server driven by a crafted prompt to run a shell, an agent whose plugin
    contacts a new endpoint, an agent tricked into uploading its secret to a host in another
    network namespace, benign twins of each, and a replay of AgentDojo's ground-truth tool
    sequences. Afterwards it prints, from SQLite, each scenario's tool-attributed timeline,
    its alerts and a summary table.
    """
    from runwatch.cli.watch import rule_paths
    from runwatch.demo.report import build_reports, render_agentdojo, render_alerts, render_summary, render_timeline
    from runwatch.demo.runner import DemoError, run_demo
    from runwatch.demo.scenarios import SCENARIOS

    con = Console(highlight=False)
    if not con.is_terminal:
        con = Console(highlight=False, width=160)  # piped: keep timeline lines and the table whole
    if list_only:
        for sc in SCENARIOS.values():
            con.print(f"{sc.name:<20} {sc.label:<7} {sc.title}")
        return
    rules = rule_paths((), no_rules)
    con.print(Rule("runwatch demo"))
    if not rules:
        note("no rule pack loaded: alerts will not be raised")
    try:
        run = run_demo(scenarios, db, rules=rules, limit=limit, agentdojo=agentdojo,
                       keep_dir=db + ".bundles" if keep else None,
                       progress=lambda line: con.print(f"[dim]{line}[/]", highlight=False))
    except (DemoError, NoSourceError, StoreError) as exc:
        fail(str(exc))
    for line in run.notices:
        note(line)
    reports = build_reports(run)
    for rep in reports:
        sc = rep.run.scenario
        con.print(Rule(f"{sc.name} ({sc.label}): {sc.title}"))
        con.print(f"  [dim]expect: {sc.expect}[/]")
        if rep.run.result.error:
            con.print(f"  [red]scenario failed:[/] {rep.run.result.error}")
        if sc.name == "agentdojo":
            render_agentdojo(rep, con)
        else:
            render_timeline(rep, con)
        render_alerts(rep, con)
    con.print(Rule())
    render_summary(reports, con)
    noisy = sorted({r for rep in reports if rep.run.scenario.benign for r in rep.rule_ids})
    if noisy:
        con.print(f"[yellow]benign scenarios raised alerts from: {', '.join(noisy)}[/]")
    s = run.summary
    con.print(f"events stored: {s.get('events', 0)}; drops: {s.get('drops', 0)}; "
              f"rules: {len(run.rules)} file(s); peers: {run.peers}")
    if run.leftovers:
        con.print(f"[red]left on the machine: {', '.join(run.leftovers)}[/]")
    con.print(f"explore: runwatch events --db {db} --container demo-<scenario>; runwatch alerts --db {db}")
    failed = [r.scenario.name for r in run.runs if r.result.rc != 0 or r.result.error]
    if failed or run.leftovers:
        fail(f"scenario(s) failed: {', '.join(failed)}" if failed else "clean-up incomplete")

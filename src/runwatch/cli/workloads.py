"""``runwatch workloads``: the workloads a store has seen, with identity, role, owner, policy,
alert counts and review status, for people (text) or machines (json, one object per line)."""

from __future__ import annotations

import datetime
import sys
from typing import TYPE_CHECKING

import click
import msgspec

from runwatch.cli.common import config_problems, db_option, fail

if TYPE_CHECKING:
    from runwatch.store.workloads import WorkloadRow

_JSON_SKIP = ("container",)


@click.command()
@db_option()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people; json: one object per workload (container), one per line.")
@click.option("--overdue", is_flag=True,
              help="Only workloads whose review is overdue (review_by before today) or missing.")
@click.option("--policy", "policy", multiple=True, metavar="PATH",
              help="Policy file or directory (repeatable): name the policy selecting each workload instead "
              "of the policy of its newest recorded decision.")
def workloads(db: str, fmt: str, overdue: bool, policy: tuple[str, ...]) -> None:
    """List the workloads (containers) seen in the store: identity, role, owner, escalation, policy,
    pod siblings, alerts by severity, last seen and review status."""
    from runwatch.store.sqlite import StoreError
    from runwatch.store.workloads import query_workloads

    today = datetime.datetime.now(datetime.UTC).date()
    try:
        rows = query_workloads(db, today)
    except StoreError as exc:
        fail(str(exc))
    if policy:
        from runwatch.policy.loader import PolicyLoadError, load_policies

        try:
            policies = load_policies(list(policy))
        except PolicyLoadError as exc:
            config_problems(exc.errors)
            fail(f"{len(exc.errors)} error(s) in the policies")
        for r in rows:
            chosen = policies.for_container(r.container)
            r.policy = chosen.id if chosen is not None else None
    if overdue:
        rows = [r for r in rows if r.review != "ok"]
    out = sys.stdout
    if fmt == "json":
        for r in rows:
            data = msgspec.to_builtins(r)
            for key in _JSON_SKIP:
                data.pop(key, None)
            out.write(msgspec.json.encode(data).decode() + "\n")
    else:
        out.write(render_table(rows))
    out.flush()


def render_table(rows: list[WorkloadRow]) -> str:
    """The rows as an aligned text table (values with control characters shown escaped)."""
    from runwatch.textsafe import printable

    head = ("WORKLOAD", "ID", "IDENTITY", "ROLE", "OWNER", "ESCALATION", "POLICY", "ALERTS C/H/M/L/I",
            "EVENTS", "LAST SEEN", "REVIEW")
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        where = "/".join(p for p in (r.namespace, r.pod) if p)
        name = f"{where}/{r.name}" if where and r.name else (r.name or where or r.id[:12])
        if r.siblings:
            name += f" (+{','.join(r.siblings)})"
        ident = f"{r.spiffe_id} ({r.spiffe_source})" if r.spiffe_id else "-"
        review = r.review if not r.review_by else f"{r.review} {r.review_by}"
        lines.append(tuple(printable(v) for v in (
            name, r.id[:12], ident, r.role or "-", r.owner or "-", r.escalation or "-", r.policy or "-",
            "/".join(str(n) for n in r.alerts.values()), str(r.events), r.last_seen, review)))
    if len(lines) == 1:
        return "no workloads seen\n"
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "".join("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n"
                   for line in lines)

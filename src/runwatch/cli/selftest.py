"""``runwatch selftest``: prove what the sensor sees in each container, with harmless canaries."""

from __future__ import annotations

import os
import sys

import click

from runwatch.cli.common import fail, note


@click.command()
@click.option("--pod", "pods", multiple=True, metavar="P", help="The containers of this pod (repeatable).")
@click.option("--container", "containers", multiple=True, metavar="C",
              help="This container: name, id or id prefix of 4+ characters (repeatable).")
@click.option("--all", "every", is_flag=True, help="Every running container.")
@click.option("--timeout", type=click.FloatRange(min=0.5), default=10.0, show_default=True, metavar="S",
              help="Seconds to wait for the canaries' events after the last one ran.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--source", type=click.Choice(["auto", "kernel", "proc"]), default="auto", show_default=True,
              help="System source, as for `runwatch run`.")
@click.option("--drop-container", "drop", multiple=True, metavar="C",
              help="Drop this container's events in the session's container filter (repeatable): shows how "
              "a container the sensor does not see is reported.")
def selftest(pods: tuple[str, ...], containers: tuple[str, ...], every: bool, timeout: float, fmt: str,
             source: str, drop: tuple[str, ...]) -> None:
    """Run harmless canaries (an exec, a read of a canary file under a watched path, a loopback
    connect, a DNS question) in each container in scope through its runtime's exec, and report
    per container and canary what the sensor saw and with what delay. Exit 1 when a container
    is blind (or partly), 2 when nothing is in scope."""
    from runwatch.selftest.report import render_text, to_json
    from runwatch.selftest.runner import SelftestOptions, run_selftest
    from runwatch.selftest.targets import running, select
    from runwatch.sensors.select import NoSourceError
    from runwatch.store.sqlite import StoreError

    if not (pods or containers or every):
        fail("name the containers to test: --pod P, --container C or --all", code=2)
    if os.geteuid() != 0:
        fail("selftest needs root: it loads the sensor and execs in containers")
    targets = select(running(), pods, containers, every)
    if not targets:
        fail("no running container in scope" + ("" if every else f" ({', '.join(pods + containers)})"), code=2)
    try:
        report = run_selftest(targets, SelftestOptions(timeout=timeout, source=source, drop_containers=drop,
                                                      notice=note))
    except (NoSourceError, StoreError) as exc:
        fail(str(exc))
    sys.stdout.write(to_json(report) + "\n" if fmt == "json" else render_text(report))
    sys.stdout.flush()
    if not report.ok:
        sys.exit(1)

"""``runwatch demo``: a real runc container doing telling things, watched, then shown."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.rule import Rule

from runwatch.cli.common import fail, note
from runwatch.cli.watch import ring_bytes
from runwatch.sensors.select import NoSourceError
from runwatch.session import Session, SessionOptions
from runwatch.store.sqlite import StoreError, query_events


@click.command()
@click.option("--db", default="runwatch-demo.db", show_default=True, metavar="PATH",
              help="SQLite store for the demo's events (replaced on each run).")
def demo(db: str) -> None:
    """Run the bundled workload in a runc container under the sensor and show what it did.

    The container (named demo-agent, with a mounted secret) spawns a shell, reads the
    secret, resolves a name and connects out; runwatch records it all and then prints
    the events with their container and process ancestry, read back from SQLite.
    """
    from runwatch.demo.selfdemo import CONTAINER_NAME
    from runwatch.demo.stub import DnsStub, TcpSink

    con = Console(highlight=False)
    for suffix in ("", "-wal", "-shm"):
        Path(db + suffix).unlink(missing_ok=True)
    con.print(Rule("runwatch demo"))
    con.print("starting the sensor, then a runc container [bold]demo-agent[/] under `runwatch run`...")
    opts = SessionOptions(db=db, track_self=True, ring_bytes=ring_bytes(16))
    with TcpSink() as sink, DnsStub() as dns:
        if not dns.available:
            note("127.0.0.1:53 is in use: the DNS step will not reach the demo stub")
        try:
            session = Session(opts).start(["runwatch", "demo"])
        except (NoSourceError, StoreError) as exc:
            fail(str(exc))
        assert session.opened is not None
        for line in session.opened.notices:
            note(line)
        try:
            child = session.spawn([sys.executable, "-m", "runwatch.demo.selfdemo", "--port", str(sink.port)])
            rc = child.wait()
            session.exit_code = rc
        finally:
            summary = session.close()
    if rc != 0:
        fail(f"the demo workload failed with exit code {rc}")
    events = query_events(db, container=CONTAINER_NAME)
    con.print(Rule(f"what the container did ({len(events)} events, read back from {db})"))
    from runwatch.outputs.text import render_events

    interesting = [e for e in events if e.kind != "process.fork" and not e.exe.startswith("/dev/fd/")
                   and not e.exe.startswith("/proc/self/")]
    render_events(interesting, con)
    kinds = sorted({e.kind for e in events})
    con.print(Rule("summary"))
    con.print(f"container events: {len(events)} ({', '.join(kinds)}); all events: {summary['events']}; "
              f"drops: {summary['drops']}; sink received {sink.received} bytes; DNS stub saw {dns.queries} "
              f"queries")
    con.print(f"explore: runwatch events --db {db} --container {CONTAINER_NAME} [--format json|ocsf]")

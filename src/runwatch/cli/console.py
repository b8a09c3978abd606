"""``runwatch console``: the web console over an event store."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from runwatch.cli.common import db_option, fail


@click.command()
@db_option()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where to serve; an address other than loopback needs --token-file.")
@click.option("--token-file", metavar="FILE", help="Read the access token from FILE (default: a random token, "
              "printed at start).")
@click.option("--acks", metavar="FILE", help="Where alert acknowledgements are kept (default: DB.console-acks).")
@click.option("--control-socket", metavar="PATH", envvar="RUNWATCH_CONTROL_SOCKET",
              help="The running runwatch's control socket, for challenges (default /run/runwatch/control.sock; "
              "also $RUNWATCH_CONTROL_SOCKET).")
@click.option("--lake", metavar="DIR", help="Read the OCSF lake DIR instead of the store (the Health page then "
              "shows no runs: the lake keeps none).")
def console(db: str, listen: str, token_file: str | None, acks: str | None, control_socket: str | None,
            lake: str | None) -> None:
    """Serve the web console: workloads, alerts (live), timelines, process trees, reports,
    challenges and health, over the store at --db (or the OCSF lake at --lake)."""
    from runwatch.console.acks import default_path
    from runwatch.console.app import ConsoleConfig, default_control_socket
    from runwatch.console.auth import TokenError, new_token, read_token
    from runwatch.console.serve import ConsoleServer, ListenError, check_exposure, parse_listen
    from runwatch.store.source import LakeDir, Source, query_runs
    from runwatch.store.sqlite_layout import StoreError

    try:
        host, port = parse_listen(listen)
        check_exposure(host, token_file)
        token = read_token(token_file) if token_file is not None else new_token()
    except (ListenError, TokenError) as exc:
        fail(str(exc), code=2)
    src: Source = LakeDir(lake) if lake is not None else db
    try:
        query_runs(src)  # the store must be readable now, not at the first page
    except StoreError as exc:
        fail(str(exc))
    cfg = ConsoleConfig(db=src, token=token, acks=acks or str(default_path(str(src))),
                        control_socket=control_socket or default_control_socket())
    try:
        server = ConsoleServer(cfg, host, port).start()
    except ListenError as exc:
        fail(str(exc))
    click.echo(f"runwatch console on {server.url} ({'lake' if lake is not None else 'store'} {src})")
    if token_file is None:
        click.echo(f"token: {token}")
    else:
        click.echo(f"token: from {Path(token_file)}")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.is_set() and server.thread.is_alive():
        done.wait(0.5)
    server.stop()
    if not done.is_set():
        fail("the console stopped")

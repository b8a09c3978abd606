"""``runwatch policy suggest|check``, ``runwatch approve|reject|challenges`` and the policy
options of ``run``/``watch`` (``--policy``, ``--mode``, ``--control-socket``), with the live
printer of decisions."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO, TypeVar

import click

from runwatch.cli.common import DEFAULT_DB, config_problems, err_console, fail
from runwatch.events import Event
from runwatch.policy.server import DEFAULT_CONTROL_SOCKET

F = TypeVar("F", bound=Callable[..., Any])

CONTROL_ENV = "RUNWATCH_CONTROL_SOCKET"
#: Verdicts printed live to stderr (allows are only stored).
LIVE_VERDICTS = frozenset({"deny", "would_deny", "kill", "challenge", "would_challenge", "reject", "timeout",
                           "approve"})


def _control_option(f: F) -> F:
    return click.option("--control-socket", metavar="PATH", envvar=CONTROL_ENV, default=DEFAULT_CONTROL_SOCKET,
                        show_default=True, help=f"runwatch's control socket (root only; also ${CONTROL_ENV}).")(f)


def policy_options(f: F) -> F:
    """``--policy``, ``--mode`` and ``--control-socket`` for ``run`` and ``watch``."""
    f = click.option("--policy", "policy", multiple=True, metavar="PATH",
                     help="Policy file or directory (repeatable): tool decisions, egress, exec and file rules "
                     "applied to the workloads they select.")(f)
    f = click.option("--mode", type=click.Choice(["monitor", "enforce"]), default=None,
                     help="Override every policy's mode: monitor records would_deny, enforce blocks.")(f)
    return _control_option(f)


class DecisionPrinter:
    """Sink printing each denying, killing or challenging ``policy.decision`` as one line.

    Thread safety: ``write`` from the pipeline thread only."""

    name = "decisions"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.printed = 0

    def open(self) -> None:
        """Nothing to open: the stream belongs to the caller."""

    def flush(self) -> None:
        """Flush the stream."""
        self.stream.flush()

    def write(self, events: Sequence[Event]) -> None:
        """Print the decisions of a batch that are not plain allows."""
        for e in events:
            d = e.decision
            if e.kind != "policy.decision" or d is None or d.verdict not in LIVE_VERDICTS:
                continue
            who = ""
            if e.container is not None:
                who = f" container={e.container.name or e.container.id}"
            elif e.attrs and e.attrs.get("container_id"):
                who = f" container={e.attrs['container_id']}"
            cid = f" challenge={d.challenge_id}" if d.challenge_id else ""
            self.stream.write(f"POLICY {d.verdict.upper()} [{d.layer}] {d.target or ''} policy={d.policy} "
                              f"rule={d.rule}{cid}{who} pid={e.pid} exe={e.exe or '?'}: {d.reason or ''}\n")
            self.printed += 1
        self.stream.flush()

    def close(self) -> None:
        """Flush (the stream is not ours to close)."""
        self.stream.flush()


def _cli_error(exc: Exception) -> None:
    fail(str(exc))


@click.command()
@click.argument("challenge_id", metavar="ID")
@click.option("--by", metavar="NAME", help="A note kept with the answer (default: $SUDO_USER or the current "
              "user); who answered is taken from the connection's credentials.")
@_control_option
def approve(challenge_id: str, by: str | None, control_socket: str) -> None:
    """Approve a pending tool-call challenge: the waiting tool call runs.

    IDs are shown live by `runwatch run/watch --policy` and by `runwatch challenges`.
    """
    from runwatch.policy.cli import PolicyCliError, cli_approve

    try:
        click.echo(cli_approve(challenge_id, control_socket, by))
    except PolicyCliError as exc:
        _cli_error(exc)


@click.command()
@click.argument("challenge_id", metavar="ID")
@click.option("--by", metavar="NAME", help="A note kept with the answer (default: $SUDO_USER or the current "
              "user); who answered is taken from the connection's credentials.")
@_control_option
def reject(challenge_id: str, by: str | None, control_socket: str) -> None:
    """Reject a pending tool-call challenge: the waiting tool call is denied."""
    from runwatch.policy.cli import PolicyCliError, cli_reject

    try:
        click.echo(cli_reject(challenge_id, control_socket, by))
    except PolicyCliError as exc:
        _cli_error(exc)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_control_option
def challenges(fmt: str, control_socket: str) -> None:
    """List the pending tool-call challenges of the running runwatch."""
    import json

    from runwatch.policy.cli import PolicyCliError, cli_challenges, format_challenges

    try:
        items = cli_challenges(control_socket)
    except PolicyCliError as exc:
        _cli_error(exc)
    if fmt == "json":
        for c in items:
            click.echo(json.dumps(c, sort_keys=True))
    else:
        click.echo(format_challenges(items))


@click.group()
def policy() -> None:
    """Policy files: check them, or suggest one from recorded behaviour."""


@policy.command()
@click.option("--db", default=DEFAULT_DB, show_default=True, metavar="PATH", help="SQLite event store to learn from.")
@click.option("--container", required=True, metavar="NAME",
              help="Container name, id or id prefix whose recorded behaviour the policy allows.")
@click.option("-o", "--output", metavar="FILE", help="Write the policy to FILE (default: stdout).")
def suggest(db: str, container: str, output: str | None) -> None:
    """Write the least-privilege policy that allows everything a container was recorded doing.

    Tools, destinations, executables and secret readers seen in the store become allow
    lists, in monitor mode, for a person to review before enforcing.
    """
    from runwatch.policy.cli import PolicyCliError, cli_suggest

    try:
        text = cli_suggest(db, container, output)
    except PolicyCliError as exc:
        _cli_error(exc)
    if output:
        err_console.print(f"runwatch: policy written to {output}", highlight=False, markup=False)
    else:
        click.echo(text, nl=False)


@policy.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
def check(paths: tuple[str, ...]) -> None:
    """Validate policy files or directories; every warning and error as file:line:col: message."""
    from runwatch.policy.cli import cli_check

    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        fail(f"{missing[0]}: no such file or directory")
    errors, warnings = cli_check(list(paths))
    config_problems(errors, warnings)
    if errors:
        fail(f"{len(errors)} error(s) in the policies")
    click.echo(f"ok: {', '.join(paths)}")

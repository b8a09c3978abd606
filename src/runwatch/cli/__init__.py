"""The ``runwatch`` command line. Subcommands live in small modules beside this one."""

from __future__ import annotations

import sys

import click

from runwatch import __version__
from runwatch.cli.alerts import alerts
from runwatch.cli.common import fail
from runwatch.cli.demo import demo
from runwatch.cli.doctor import doctor
from runwatch.cli.policy import approve, challenges, policy, reject
from runwatch.cli.query import events
from runwatch.cli.rules import rules
from runwatch.cli.watch import run, watch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runwatch")
def cli() -> None:
    """runwatch: runtime telemetry, detection and policy for containerised AI workloads.

    Watches what processes and containers actually do (exec, network, DNS, secret
    reads, privilege changes) through eBPF, attributes every event to its container and
    process ancestry, and stores it in SQLite (the embedded default).
    """


cli.add_command(run)
cli.add_command(watch)
cli.add_command(events)
cli.add_command(doctor)
cli.add_command(demo)
cli.add_command(rules)
cli.add_command(alerts)
cli.add_command(policy)
cli.add_command(approve)
cli.add_command(reject)
cli.add_command(challenges)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line and a non-zero exit for any error (2 for usage errors)."""
    try:
        rv = cli.main(args=argv, standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        fail(f"{exc.format_message()}{hint}", code=2)
    except click.ClickException as exc:
        fail(exc.format_message(), code=exc.exit_code)
    except click.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # last resort: never a traceback for a user error
        fail(f"{type(exc).__name__}: {exc}")
    sys.exit(rv if isinstance(rv, int) else 0)

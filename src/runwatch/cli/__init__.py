"""The ``runwatch`` command line. Subcommands live in small modules beside this one."""

from __future__ import annotations

import importlib
import sys

import click

from runwatch import __version__
from runwatch.cli.common import fail

#: Each subcommand and the ``module:attribute`` that defines it; a module is imported only
#: when its command runs (or help lists it), so a command pays for its own imports alone.
COMMANDS: dict[str, str] = {
    "run": "runwatch.cli.watch:run",
    "watch": "runwatch.cli.watch:watch",
    "events": "runwatch.cli.query:events",
    "query": "runwatch.cli.lake:query",
    "doctor": "runwatch.cli.doctor:doctor",
    "demo": "runwatch.cli.demo:demo",
    "rules": "runwatch.cli.rules:rules",
    "alerts": "runwatch.cli.alerts:alerts",
    "prune": "runwatch.cli.prune:prune",
    "report": "runwatch.cli.report:report",
    "policy": "runwatch.cli.policy:policy",
    "approve": "runwatch.cli.policy:approve",
    "reject": "runwatch.cli.policy:reject",
    "challenges": "runwatch.cli.policy:challenges",
    "console": "runwatch.cli.console:console",
    "workloads": "runwatch.cli.workloads:workloads",
    "selftest": "runwatch.cli.selftest:selftest",
    "worker": "runwatch.cli.fleet:worker",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported from :data:`COMMANDS` on first lookup."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runwatch")
def cli() -> None:
    """runwatch: runtime telemetry, detection and policy for containerised AI workloads.

    Watches what processes and containers actually do (exec, network, DNS, secret
    reads, privilege changes) through eBPF, attributes every event to its container and
    process ancestry, and stores it in SQLite (the embedded default).
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line and a non-zero exit for any error (2 for usage errors)."""
    from runwatch.cli.prefetch import sensor_for

    sensor_for(sys.argv[1:] if argv is None else argv)  # the kernel verifies while the rest imports
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

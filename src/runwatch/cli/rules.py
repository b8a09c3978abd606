"""``runwatch rules check|test``: lint rule files with located errors; run their own tests."""

from __future__ import annotations

import sys

import click

from runwatch.cli.common import config_problems, fail


@click.group()
def rules() -> None:
    """Work with detection rule files (YAML lists, macros, rules and sequences)."""


@rules.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
def check(paths: tuple[str, ...]) -> None:
    """Parse and lint rule files; print every warning and error as FILE:LINE:COL: message.

    PATH may be a file or a directory (every *.yaml / *.yml in it). Warnings (an unused macro
    or list, a rule tried on every event kind) do not fail the check; exit 1 on any error.
    """
    from runwatch.rules import load_rules

    try:
        rs = load_rules(list(paths), skip_invalid=True)  # one load: every error and warning, kept
    except OSError as exc:
        fail(str(exc))
    config_problems(rs.errors, rs.warnings)
    if rs.errors:
        fail(f"{len(rs.errors)} error(s) in {', '.join(paths)}")
    click.echo(f"ok: {len(rs.rules)} rules, {len(rs.sequences)} sequences")


@rules.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
def test(paths: tuple[str, ...]) -> None:
    """Run the test cases written inside rule files (events in, expected alerts out)."""
    from runwatch.rules import RuleLoadError, run_rule_tests

    try:
        results = run_rule_tests(list(paths))
    except RuleLoadError as exc:
        config_problems(exc.errors)
        fail(f"{len(exc.errors)} error(s) loading {', '.join(paths)}")
    except OSError as exc:
        fail(str(exc))
    failed = 0
    for r in results:
        click.echo(str(r))
        failed += not r.passed
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


@rules.command(name="import")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--format", "fmt", type=click.Choice(["auto", "sigma", "falco"]), default="auto", show_default=True,
              help="Input format (auto decides per file).")
@click.option("-o", "--out", metavar="FILE", help="Write the rules that loaded to FILE as a runwatch rule file.")
def import_(paths: tuple[str, ...], fmt: str, out: str | None) -> None:
    """Import SigmaHQ (Linux) or Falco rule files: each rule loaded or a one-line reason.

    Prints one status line per rule and a summary per corpus (how much of it loads).
    """
    from runwatch.rules.importers import cli_import

    sys.exit(cli_import(list(paths), fmt, out))

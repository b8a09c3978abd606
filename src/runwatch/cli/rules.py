"""``runwatch rules check|test``: lint rule files with located errors; run their own tests."""

from __future__ import annotations

import sys

import click

from runwatch.cli.common import fail


@click.group()
def rules() -> None:
    """Work with detection rule files (YAML lists, macros, rules and sequences)."""


@rules.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
def check(paths: tuple[str, ...]) -> None:
    """Parse and lint rule files; print every error as FILE:LINE: message.

    PATH may be a file or a directory (every *.yaml / *.yml in it). Exit 1 on any error.
    """
    from runwatch.rules import check_files, load_rules

    try:
        errors = check_files(list(paths))
    except OSError as exc:
        fail(str(exc))
    for err in errors:
        click.echo(str(err), err=True)
    if errors:
        fail(f"{len(errors)} error(s) in {', '.join(paths)}")
    rs = load_rules(list(paths))
    click.echo(f"ok: {len(rs.rules)} rules, {len(rs.sequences)} sequences")


@rules.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
def test(paths: tuple[str, ...]) -> None:
    """Run the test cases written inside rule files (events in, expected alerts out)."""
    from runwatch.rules import RuleLoadError, run_rule_tests

    try:
        results = run_rule_tests(list(paths))
    except RuleLoadError as exc:
        for err in exc.errors:
            click.echo(str(err), err=True)
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

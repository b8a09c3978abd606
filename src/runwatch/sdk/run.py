"""Zero-code instrumentation: ``python -m runwatch.sdk.run [OPTIONS] (SCRIPT | -m MODULE) [ARGS...]``.

Installs the audit-hook sensor (:mod:`runwatch.sdk.audithook`) and the library wrappers
(:mod:`runwatch.sdk.autowrap`), announces the process as an agent, makes Python child
processes instrumented too (``RUNWATCH_AUTOINSTRUMENT=1`` and the sitecustomize directory
on ``PYTHONPATH``, unless ``RUNWATCH_PROPAGATE=0``), then runs the script (or module) as
``__main__`` with ``sys.argv`` set as ``python SCRIPT ARGS`` would. The exit status is the
script's; an uncaught exception is printed through ``sys.excepthook`` without this
launcher's frames and gives status 1. With no collector listening nothing changes.

Options (before the script): ``--agent NAME`` (default ``RUNWATCH_AGENT``, else the
script's or module's name), ``--watch PREFIX`` (repeatable; more watched open prefixes),
``--no-audit``, ``--no-wrap``. ``--pth`` prints the ``.pth`` line that makes
``RUNWATCH_AUTOINSTRUMENT=1`` alone instrument every Python started in an environment.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Sequence
from types import TracebackType

from runwatch import sdk
from runwatch.sdk import audithook, autowrap

ENV_AUTO = "RUNWATCH_AUTOINSTRUMENT"
ENV_AGENT = "RUNWATCH_AGENT"
PTH_LINE = ("import os; os.environ.get('RUNWATCH_AUTOINSTRUMENT') == '1' and "
            "__import__('runwatch.sdk.run').sdk.run.install_from_env()\n")
"""A line for a ``.pth`` file in site-packages: instruments the interpreter when the variable is 1."""

USAGE = ("usage: python -m runwatch.sdk.run [--agent NAME] [--watch PREFIX]... [--no-audit] [--no-wrap] "
         "(SCRIPT | -m MODULE) [ARGS...]")

_installed = False


def install(agent: str | None = None, *, audit: bool = True, wrap: bool = True, watch: Sequence[str] = (),
            ignore: Sequence[str] = (), propagate: bool | None = None) -> None:
    """Install the instrumentation in this process (idempotent) and announce ``agent``.

    ``propagate`` (default: unless ``RUNWATCH_PROPAGATE=0``) exports ``RUNWATCH_AUTOINSTRUMENT=1``
    and the sitecustomize directory on ``PYTHONPATH`` so Python children are instrumented too.
    """
    global _installed
    if audit:
        audithook.install(watch, ignore=ignore)
    if wrap:
        autowrap.install()
    if propagate is None:
        propagate = os.environ.get(autowrap.ENV_PROPAGATE, "1") != "0"
    if propagate:
        env = autowrap._propagated_env({})
        if env:
            os.environ.setdefault(ENV_AUTO, env[ENV_AUTO])
            os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    if not _installed:
        _installed = True
        sdk.announce(agent)


def install_from_env() -> None:
    """What the sitecustomize switch and the ``.pth`` line call: install with settings from the environment.

    Never raises: a broken instrumentation must not stop the interpreter from starting.
    """
    try:
        install(os.environ.get(ENV_AGENT) or None)
    except Exception as exc:  # report once on stderr, run uninstrumented
        print(f"runwatch: instrumentation not installed: {exc}", file=sys.stderr)


def _strip_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop the launcher's and runpy's leading frames, as ``python SCRIPT`` shows none of them."""
    here = os.path.abspath(__file__)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename != here and not filename.endswith(("runpy.py", "<frozen runpy>")):
            break
        tb = tb.tb_next
    return tb


def _parse(argv: Sequence[str]) -> tuple[dict[str, object], str | None, str | None, list[str]]:
    opts: dict[str, object] = {"agent": None, "watch": [], "audit": True, "wrap": True}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--agent" and i + 1 < len(argv):
            opts["agent"] = argv[i + 1]
            i += 2
        elif arg.startswith("--agent="):
            opts["agent"] = arg.split("=", 1)[1]
            i += 1
        elif arg == "--watch" and i + 1 < len(argv):
            opts["watch"].append(argv[i + 1])  # type: ignore[attr-defined]
            i += 2
        elif arg == "--no-audit":
            opts["audit"] = False
            i += 1
        elif arg == "--no-wrap":
            opts["wrap"] = False
            i += 1
        elif arg == "-m":
            if i + 1 >= len(argv):
                raise ValueError("-m needs a module name")
            return opts, None, argv[i + 1], list(argv[i + 2:])
        elif arg == "--":
            if i + 1 >= len(argv):
                raise ValueError("no script given")
            return opts, argv[i + 1], None, list(argv[i + 2:])
        elif arg.startswith("-") and arg != "-":
            raise ValueError(f"unknown option {arg!r}")
        else:
            return opts, arg, None, list(argv[i + 1:])
    raise ValueError("no script given")


def main(argv: Sequence[str] | None = None) -> int:
    """Run a script or module under the instrumentation; returns its exit status (see the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if args[:1] == ["--pth"]:
        sys.stdout.write(PTH_LINE)
        return 0
    try:
        opts, script, module, rest = _parse(args)
    except ValueError as exc:
        print(f"runwatch.sdk.run: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    if script is not None and not os.path.exists(script):
        print(f"{sys.executable}: can't open file {os.path.abspath(script)!r}: [Errno 2] No such file or directory",
              file=sys.stderr)
        return 2
    target = script if script is not None else str(module)
    agent = opts["agent"] or os.environ.get(ENV_AGENT) or os.path.splitext(os.path.basename(target))[0]
    ignore = [os.path.abspath(script)] if script is not None else []
    from runwatch.sdk import run as this  # the importable copy, when this one runs as __main__

    this.install(str(agent), audit=bool(opts["audit"]), wrap=bool(opts["wrap"]),
            watch=list(opts["watch"]), ignore=ignore)  # type: ignore[call-overload]
    try:
        if script is not None:
            sys.argv = [script, *rest]
            sys.path[0] = os.path.dirname(os.path.abspath(script))
            runpy.run_path(script, run_name="__main__")
        else:
            sys.argv = [target, *rest]
            sys.path[0] = os.getcwd()
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = _strip_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)  # the default hook prints exc.__traceback__
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writing a stream of output lines for ``events`` and ``alerts``: as they are read, so the
first line comes at once and memory stays flat; a reader that goes away (``| head -1``) or
Ctrl-C ends the command quietly with status 0; a store error mid-stream is one error line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from runwatch.cli.common import fail
from runwatch.store.sqlite import StoreError


def write_lines(lines: Iterable[bytes], *, flush_each: bool = False) -> None:
    """Write each line (newline added) to standard output; flush after each one with
    ``flush_each`` (when following, so a line shows the moment it is read)."""
    out = sys.stdout.buffer
    try:
        try:
            for line in lines:
                out.write(line + b"\n")
                if flush_each:
                    out.flush()
            out.flush()
        except StoreError as exc:
            out.flush()
            fail(str(exc))
    except BrokenPipeError:
        _quiet_stdout()
    except KeyboardInterrupt:
        try:
            out.flush()
        except BrokenPipeError:
            _quiet_stdout()
    sys.exit(0)


def _quiet_stdout() -> None:
    """The reader is gone: point stdout at /dev/null so the exit's final flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)

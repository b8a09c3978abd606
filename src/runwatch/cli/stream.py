"""Writing a stream of output lines for ``events`` and ``alerts``: as they are read, so the
first line comes at once and memory stays flat; a reader that goes away (``| head -1``) or
Ctrl-C ends the command quietly with status 0; a store error mid-stream is one error line."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import BinaryIO

from runwatch.cli.common import fail
from runwatch.store.sqlite import StoreError

#: Lines written together (one write call, one system call under PYTHONUNBUFFERED).
BATCH_LINES = 512
#: A batch also goes out when a line comes this long (s) after the batch's first one.
BATCH_WAIT_S = 0.05


def write_lines(lines: Iterable[bytes], *, flush_each: bool = False) -> None:
    """Write each line (newline added) to standard output; flush after each one with
    ``flush_each`` (when following, so a line shows the moment it is read). Otherwise the
    first line goes out at once (``| head -1`` answers as soon as it is read), the rest in
    batches of :data:`BATCH_LINES` (or what came in :data:`BATCH_WAIT_S`), the tail at the end."""
    out = sys.stdout.buffer
    try:
        try:
            if flush_each:
                for line in lines:
                    out.write(line + b"\n")
                    out.flush()
            else:
                _batched(out, lines)
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


def _batched(out: BinaryIO, lines: Iterable[bytes]) -> None:
    it = iter(lines)
    for line in it:  # the first line at once
        out.write(line + b"\n")
        out.flush()
        break
    batch: list[bytes] = []
    due = 0.0
    clock = time.monotonic
    for line in it:
        batch.append(line)
        if len(batch) == 1:
            due = clock() + BATCH_WAIT_S
        elif len(batch) >= BATCH_LINES or clock() >= due:
            batch.append(b"")
            out.write(b"\n".join(batch))
            out.flush()
            batch = []
    if batch:
        batch.append(b"")
        out.write(b"\n".join(batch))


def _quiet_stdout() -> None:
    """The reader is gone: point stdout at /dev/null so the exit's final flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)

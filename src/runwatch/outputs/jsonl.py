"""JSONL output: one compact JSON event per line (``-`` means standard output).

The file is opened for append, so restarts never truncate earlier output. ``reopen()`` only
sets a flag (safe from a signal handler); the next ``write()`` or ``close()`` closes the old
handle and opens the path again, which is what log rotation (``logrotate`` with ``create``)
needs. Lines are written whole: a batch is encoded first and written with one call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

from runwatch.events import Event, upgrade
from runwatch.outputs.base import register_output
from runwatch.privatefile import open_append


class OutputError(Exception):
    """An output could not open or write its destination (one-line message naming it)."""


class JsonlOutput:
    """Append events as JSON lines to ``path`` (``"-"``: stdout).

    ``encode`` turns one event into the bytes of one line (without newline); by default the
    event's own msgspec JSON. Not thread-safe except for :meth:`reopen`.
    """

    name = "jsonl"

    def __init__(
        self, path: str | os.PathLike[str] = "-", *, encode: Callable[[Event], bytes] | None = None
    ) -> None:
        self.path = str(path)
        self._encoder = msgspec.json.Encoder()
        self._encode = encode
        self._fh: BinaryIO | None = None
        self._reopen_requested = False
        self._closed = False
        self.lines = 0  # lines written since construction

    def open(self) -> None:
        """Open the destination (append). Raises :class:`OutputError` naming the path."""
        if self._closed:
            raise OutputError(f"{self.path}: output is closed")
        if self._fh is not None:
            return
        if self.path == "-":
            self._fh = sys.stdout.buffer
            return
        try:
            self._fh = open_append(self.path)  # 0600: events may carry secrets from argv
        except OSError as exc:
            raise OutputError(f"cannot open {self.path}: {exc.strerror or exc}") from None

    def write(self, events: Sequence[Event]) -> None:
        """Write one line per event, in order."""
        if not events:
            return
        if self._reopen_requested:
            self._do_reopen()
        if self._fh is None:
            self.open()
        assert self._fh is not None
        if self._encode is None:
            data = self._encoder.encode_lines(events)
        else:
            data = b"".join(self._encode(e) + b"\n" for e in events)
        try:
            self._fh.write(data)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.lines += len(events)

    def flush(self) -> None:
        """Push buffered lines to the file."""
        if self._fh is not None:
            try:
                self._fh.flush()
            except OSError as exc:
                raise OutputError(f"cannot flush {self.path}: {exc.strerror or exc}") from None

    def reopen(self) -> None:
        """Ask for the file to be reopened before the next write (signal-safe)."""
        self._reopen_requested = True

    def _do_reopen(self) -> None:
        self._reopen_requested = False
        if self.path == "-":
            return
        self._close_handle()
        self.open()

    def _close_handle(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.flush()
        finally:
            if fh is not sys.stdout.buffer:
                fh.close()

    def close(self) -> None:
        """Flush and close (stdout is flushed, never closed). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close_handle()
        except OSError as exc:
            raise OutputError(f"cannot flush {self.path}: {exc.strerror or exc}") from None


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[Event]:
    """Read events back from a JSONL file; a bad line raises ``ValueError("file:line: reason")``.

    Blank lines are skipped.
    """
    decoder = msgspec.json.Decoder(Event)
    shown = str(path)
    try:
        fh = open(Path(path), "rb")  # noqa: SIM115 - closed in finally
    except OSError as exc:
        raise ValueError(f"cannot open {shown}: {exc.strerror or exc}") from None
    try:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield upgrade(decoder.decode(line))
            except msgspec.DecodeError as exc:
                raise ValueError(f"{shown}:{lineno}: {exc}") from None
    finally:
        fh.close()


register_output("jsonl", JsonlOutput)

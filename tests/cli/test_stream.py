"""``events``/``alerts`` output: the first line goes out at once, the rest in batches, all in order."""

from __future__ import annotations

import select
import subprocess
import sys
import textwrap

PRODUCER = textwrap.dedent("""
    import sys
    from runwatch.cli.stream import write_lines
    def lines():
        yield b"first"
        sys.stdin.buffer.read(1)  # the reader saw "first" before any more comes
        for i in range(1023):
            yield b"line %d" % i
    write_lines(lines())
""")


def _readline(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the first line was held back waiting for the rest of the stream"
    return proc.stdout.readline()


def test_the_first_line_is_written_while_the_stream_waits_and_the_rest_in_order() -> None:
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"})
    try:
        assert _readline(proc) == b"first\n"
        assert proc.stdin is not None
        proc.stdin.write(b"x")
        proc.stdin.close()
        assert proc.stdout is not None
        rest = proc.stdout.read().splitlines()
        assert rest == [b"line %d" % i for i in range(1023)]
        assert proc.wait(30) == 0
    finally:
        proc.kill()

"""Small pieces of ordinary work that tests and recordings drive: an offline wheel for pip and
a local TCP listener to connect to."""

from __future__ import annotations

import socket
import threading
import zipfile
from pathlib import Path


def tiny_wheel(where: Path) -> Path:
    """A one-module wheel (``tinypkg``, VALUE = 23) in ``where``, so pip installs offline with
    no build step."""
    path = where / "tinypkg-1.0-py3-none-any.whl"
    files = {
        "tinypkg/__init__.py": "VALUE = 23\n",
        "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        record = [*files, "tinypkg-1.0.dist-info/RECORD"]
        zf.writestr("tinypkg-1.0.dist-info/RECORD", "".join(f"{n},,\n" for n in record))
    return path


def accepting_listener() -> tuple[socket.socket, threading.Thread]:
    """A TCP listener on 127.0.0.1 (any port) whose thread accepts and closes every connection
    until the socket is closed."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return srv, thread

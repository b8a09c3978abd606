"""What every listener runwatch opens is bounded by: connections held and time a read may wait.

(Also here: whether a unix socket path is live or stale, and :func:`prepare_unix_path`, how a
unix listener takes over its path.)

:class:`BoundedThreads` goes before ``socketserver.ThreadingMixIn`` in a server's bases: one
thread per connection up to ``max_connections`` (more are closed at once and counted), and every
connection's socket gets ``idle_timeout`` s, so a client that sends nothing, or announces a body it
never sends, is let go instead of holding a thread forever.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import socketserver
import stat
import threading
from typing import Any

IDLE_TIMEOUT_S = 30.0
"""Default seconds a read on a connection may wait before the connection is closed."""
MAX_CONNECTIONS = 256
"""Default open connections per listener."""


class BoundedThreads(socketserver.ThreadingMixIn):
    """Bounded thread-per-connection serving (see the module docstring)."""

    max_connections = MAX_CONNECTIONS
    idle_timeout = IDLE_TIMEOUT_S
    active = 0
    refused = 0
    _count_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            if self.active >= self.max_connections:
                self.refused += 1
                self.shutdown_request(request)  # type: ignore[attr-defined]
                return
            self.active += 1
        try:
            request.settimeout(self.idle_timeout)
            super().process_request(request, client_address)
        except BaseException:
            with self._count_lock:
                self.active -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self.active -= 1


def _refused(path: str, kind: int) -> bool | None:
    """True when a connect of ``kind`` is refused (nobody listens), False when it is accepted,
    None when it says nothing (wrong socket type, permission, a full backlog)."""
    s = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    s.settimeout(0.2)
    try:
        s.connect(path)
        return False
    except OSError as exc:
        return True if exc.errno == errno.ECONNREFUSED else None
    finally:
        s.close()


def _answers(path: str) -> list[bool | None]:
    return [_refused(path, kind) for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)]


def socket_alive(path: str) -> bool:
    """Whether something answers on the unix socket ``path`` (stream or datagram): then it must
    not be unlinked."""
    return False in _answers(path)


def is_stale_socket(path: str) -> bool:
    """Whether ``path`` is a unix socket file that nothing listens on (a connect is refused)."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    answers = _answers(path)
    return True in answers and False not in answers


def prepare_unix_path(path: str) -> None:
    """Make ``path``'s directory and remove a stale socket there; OSError (one line) when another
    server is live on it or the path is something else than a socket."""
    if socket_alive(path):
        raise OSError(f"{path}: another runwatch is already serving there")
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

"""The harmless acts a self-test asks of each container, and the event that proves each was seen.

Every canary carries a token unique to the run and the container, so an event can only match
the canary that caused it:

* ``exec``: ``/bin/sh -c 'exit 0' runwatch-selftest-exec-TOKEN`` -> ``process.exec`` whose command
  line holds the token;
* ``file``: ``cat`` (found by the shell) of a canary file under the watched ``/run/secrets/`` (written first, removed
  afterwards, with the directory when the self-test made it) -> ``file.open`` for reading;
* ``connect``: a TCP connect to ``127.0.0.1`` on a port nothing listens on (``nc``, else bash's
  ``/dev/tcp``) -> ``net.connect`` to that address and port, refused or not;
* ``dns``: a question for ``TOKEN.runwatch-selftest.invalid`` to a resolver at ``127.0.0.1``
  (``nslookup``), which no one answers -> ``dns.query`` of that name: the question is seen
  without an answer.

A canary whose tool the container lacks is ``not run`` (exit status 127 of its shell), which is
no blindness of the sensor. Every canary but ``exec`` runs through ``/bin/sh``, whose own exec
is no match for any of them (the tokens differ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runwatch.events import Event

CANARY_DIR = "/run/secrets"
"""A directory the sensor's default watch list covers for reads (``docs/watchlist.md``)."""
MARK = "runwatch-selftest"
NOT_RUN = 127
"""Exit status of a canary whose tool the container lacks."""


@dataclass(frozen=True)
class Token:
    """What one container's canaries are recognised by."""

    text: str  # letters and digits only: safe inside sh -c and DNS names
    port: int  # the loopback port of the connect canary

    @property
    def exec_marker(self) -> str:
        return f"{MARK}-exec-{self.text}"

    @property
    def file(self) -> str:
        return f"{CANARY_DIR}/{MARK}-{self.text}"

    @property
    def dns_name(self) -> str:
        return f"{self.text}.{MARK}.invalid"


@dataclass(frozen=True)
class Canary:
    """One act: its name, the event kind that proves it, the command and the matching test."""

    name: str
    kind: str
    argv: Callable[[Token], list[str]]
    seen: Callable[[Event, Token], bool]


def _exec_seen(e: Event, t: Token) -> bool:
    return t.exec_marker in e.cmdline


def _file_seen(e: Event, t: Token) -> bool:
    return e.file is not None and e.file.path == t.file and e.file.intent in ("read", "rw")


def _connect_seen(e: Event, t: Token) -> bool:
    return e.net is not None and e.net.dst_ip == "127.0.0.1" and e.net.dst_port == t.port


def _dns_seen(e: Event, t: Token) -> bool:
    return e.dns is not None and e.dns.name.rstrip(".").lower() == t.dns_name


def _sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


CANARIES: tuple[Canary, ...] = (
    Canary("exec", "process.exec", lambda t: ["/bin/sh", "-c", "exit 0", t.exec_marker], _exec_seen),
    Canary("file", "file.open", lambda t: _sh(f"exec cat {t.file}"), _file_seen),
    Canary("connect", "net.connect", lambda t: _sh(
        f"if command -v nc >/dev/null 2>&1; then nc -w 1 127.0.0.1 {t.port} </dev/null; "
        f"elif command -v bash >/dev/null 2>&1; then bash -c 'exec 3<>/dev/tcp/127.0.0.1/{t.port}'; "
        f"else exit {NOT_RUN}; fi; exit 0"), _connect_seen),
    Canary("dns", "dns.query", lambda t: _sh(
        f"command -v nslookup >/dev/null 2>&1 || exit {NOT_RUN}; "
        f"nslookup {t.dns_name} 127.0.0.1 >/dev/null 2>&1; exit 0"), _dns_seen),
)
"""Every canary, in the order they run in a container."""
KINDS: dict[str, str] = {c.name: c.kind for c in CANARIES}


def setup_argv(t: Token) -> list[str]:
    """Write the canary file (prints ``made`` when it had to make the directory)."""
    return _sh(f"[ -d {CANARY_DIR} ] || {{ mkdir -p {CANARY_DIR} && echo made; }}; "
               f"echo {MARK} > {t.file}")


def cleanup_argv(t: Token, made_dir: bool) -> list[str]:
    """Remove the canary file, and the directory when the set-up made it."""
    return _sh(f"rm -f {t.file}" + (f"; rmdir {CANARY_DIR} 2>/dev/null" if made_dir else "") + "; exit 0")

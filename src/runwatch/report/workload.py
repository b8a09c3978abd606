"""Which stored containers a ``--workload`` names: pod, namespace/pod, SPIFFE id, container
name, or container id prefix (at least 4 characters; a full id always matches).

A name that matches nothing is a :class:`WorkloadNotFound` whose one-line message lists the
closest names the store does hold.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from runwatch.events import Container
from runwatch.textsafe import printable

MIN_ID_PREFIX = 4
"""Shortest container-id prefix that selects a container."""


class WorkloadNotFound(LookupError):
    """No stored container is the workload asked for; the message is one line."""


def names_of(c: Container) -> list[str]:
    """Every name ``c`` answers to, most specific first."""
    out = [c.id]
    if c.spiffe_id:
        out.append(c.spiffe_id)
    if c.pod:
        if c.namespace:
            out.append(f"{c.namespace}/{c.pod}")
        out.append(c.pod)
    if c.name:
        out.append(c.name)
    return out


def matches(c: Container, wanted: str) -> bool:
    """Whether ``wanted`` names ``c``."""
    if wanted in names_of(c):
        return True
    return len(wanted) >= MIN_ID_PREFIX and c.id.startswith(wanted)


def select(containers: Sequence[Container], wanted: str, *, where: str = "the store") -> list[Container]:
    """The containers ``wanted`` names (each id once, the newest description kept), or raise
    :class:`WorkloadNotFound` naming up to five near matches."""
    picked: dict[str, Container] = {}
    for c in containers:
        if matches(c, wanted):
            picked[c.id] = c
    if picked:
        return list(picked.values())
    known = sorted({n if n != c.id else c.id[:12] for c in containers for n in names_of(c)})
    near = difflib.get_close_matches(wanted, known, n=5, cutoff=0.4)
    near += [n for n in known if wanted.lower() in n.lower() and n not in near][: 5 - len(near)]
    if not known:
        hint = f"{where} holds no container events"
    elif near:
        hint = "near matches: " + ", ".join(near)
    else:
        hint = "known: " + ", ".join(known[:5]) + (f" (and {len(known) - 5} more)" if len(known) > 5 else "")
    raise WorkloadNotFound(printable(f"no workload {wanted!r} in {where} ({hint})"))

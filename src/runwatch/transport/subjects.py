"""Subjects, partitions and message ids of the fleet stream (one place, both sides).

A message's subject is ``<prefix>.<cluster>.<node>.<class>.p<N>.<workload>``:

* ``class`` is ``event``, ``alert`` or ``decision`` (a ``policy.decision`` event);
* ``N`` is the workload's partition, ``crc32(workload key) % partitions``: every message of one
  workload, from every node, lands in the same partition, so one worker sees all of it;
* ``workload`` is the workload key made a subject token (informational: the partition is
  computed from the key itself, so two keys sharing a token never split a workload).

The workload key is the SPIFFE id when known, else the pod uid, else the container id; a host
process (no container) is keyed by its node (``host:<node>``). The ``Nats-Msg-Id`` header is
``<node>:<id>`` (the event or alert id), stable across re-publishing, so JetStream drops a copy
inside its duplicate window and sinks de-duplicate by it after that.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from runwatch.events import Event

DEFAULT_PREFIX = "runwatch"
DEFAULT_PARTITIONS = 16
CLASSES = ("event", "alert", "decision")
HEADER_NODE = "Runwatch-Node"
HEADER_CLUSTER = "Runwatch-Cluster"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_TOKEN_MAX = 96


def token(text: str) -> str:
    """``text`` as one subject token: runs of anything but letters, digits, ``_`` and ``-``
    become ``_`` (dots, wildcards and spaces never reach a subject); never empty; bounded."""
    out = _UNSAFE.sub("_", text).strip("_")[:_TOKEN_MAX]
    return out or "_"


def check_name(what: str, value: str) -> str:
    """``value`` if it is already a clean token (cluster and node names), else ValueError."""
    if not value or token(value) != value:
        raise ValueError(f"{what} {value!r} must be letters, digits, '_' or '-' (at most {_TOKEN_MAX})")
    return value


def workload_key(event: Event, node: str) -> str:
    """The identity all of a workload's messages share (see the module docstring)."""
    c = event.container
    if c is None:
        return f"host:{node}"
    return c.spiffe_id or c.pod_uid or c.id


def partition_of(key: str, partitions: int) -> int:
    """The partition of a workload key (stable across processes and hosts)."""
    return zlib.crc32(key.encode()) % partitions


def event_class(event: Event) -> str:
    """``decision`` for a policy decision, else ``event``."""
    return "decision" if event.kind == "policy.decision" else "event"


@dataclass(frozen=True)
class Subjects:
    """Subject builder of one node: ``cluster``, ``node``, the partition count and prefix."""

    cluster: str
    node: str
    partitions: int = DEFAULT_PARTITIONS
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_name("cluster", self.cluster)
        check_name("node", self.node)
        if not 1 <= self.partitions <= 4096:
            raise ValueError(f"partitions must be 1..4096, not {self.partitions}")

    def subject(self, cls: str, key: str) -> str:
        """The subject of a message of class ``cls`` about workload ``key``."""
        return f"{self.prefix}.{self.cluster}.{self.node}.{cls}.p{partition_of(key, self.partitions)}.{token(key)}"

    def msg_id(self, ident: str) -> str:
        """The ``Nats-Msg-Id`` of the event or alert ``ident`` published by this node."""
        return f"{self.node}:{ident}"


def stream_subjects(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """What the fleet stream captures."""
    return [f"{prefix}.>"]


def partition_filter(partition: int, prefix: str = DEFAULT_PREFIX) -> str:
    """The filter subject of a partition's consumer (every cluster, node and class)."""
    return f"{prefix}.*.*.*.p{partition}.*"


@dataclass(frozen=True)
class Parsed:
    """The parts of a fleet subject."""

    cluster: str
    node: str
    cls: str
    partition: int


def parse_subject(subject: str, prefix: str = DEFAULT_PREFIX) -> Parsed | None:
    """The parts of ``subject``, or None when it is not a fleet subject of ``prefix``."""
    parts = subject.split(".")
    if (len(parts) != 6 or parts[0] != prefix or parts[3] not in CLASSES or parts[4][:1] != "p"
            or not parts[4][1:].isdigit()):
        return None
    return Parsed(parts[1], parts[2], parts[3], int(parts[4][1:]))

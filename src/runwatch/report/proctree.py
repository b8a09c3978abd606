"""The workload's process tree, from its ``process.fork``/``exec``/``exit`` events.

A fork starts a process (running its parent's program until it execs); an exec either fills
the process its fork started or, when no fork was seen (the container's entrypoint, a process
started before the window), starts one. A pid seen forked again is a new process (pid reuse).
Only sources that say what a process is (:data:`runwatch.events.IDENTITY_SOURCES`) count;
the container runtime's own set-up is left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from runwatch.events import IDENTITY_SOURCES, Event
from runwatch.report.activity import runtime_noise
from runwatch.report.model import Process, call_of

TREE_KINDS = frozenset({"process.fork", "process.exec", "process.exit"})


def build_tree(events: Iterable[Event]) -> list[Process]:
    """Processes in the order they started; ``parent``/``children`` link them by node index.
    ``events`` must be in time order."""
    nodes: list[Process] = []
    current: dict[tuple[str | None, int], int] = {}  # (container id, pid) -> node

    def start(e: Event, pid: int, ppid: int) -> Process:
        box = e.container.id if e.container else None
        parent = current.get((box, ppid))
        call_id, tool = call_of(e.tool_call)
        node = Process(node=len(nodes), pid=pid, ppid=ppid, exe=e.exe, cmdline=e.cmdline, start_ns=e.time,
                       parent=parent, container=box, call_id=call_id, tool=tool, ancestry=list(e.ancestry))
        nodes.append(node)
        if parent is not None:
            nodes[parent].children.append(node.node)
        current[(box, pid)] = node.node
        return node

    for e in events:
        if e.kind not in TREE_KINDS or e.source not in IDENTITY_SOURCES or runtime_noise(e):
            continue
        box = e.container.id if e.container else None
        if e.kind == "process.fork" and e.child_pid is not None:
            start(e, e.child_pid, e.pid)
        elif e.kind == "process.exec":
            at = current.get((box, e.pid))
            node = nodes[at] if at is not None else start(e, e.pid, e.ppid)
            node.exe, node.cmdline, node.ancestry = e.exe, e.cmdline, list(e.ancestry)
            node.execs += 1
            node.programs.append(e.exe)
            if node.call_id is None and e.tool_call is not None:
                node.call_id, node.tool = call_of(e.tool_call)
        elif e.kind == "process.exit":
            at = current.get((box, e.pid))
            if at is not None:
                nodes[at].exit_code, nodes[at].signal = e.exit_code, e.signal
    return nodes


def depth_first(nodes: list[Process]) -> list[tuple[Process, int]]:
    """Every process with its depth, parents before children (roots in start order)."""
    out: list[tuple[Process, int]] = []
    stack = [(n.node, 0) for n in reversed(nodes) if n.parent is None]
    while stack:
        at, depth = stack.pop()
        out.append((nodes[at], depth))
        stack.extend((c, depth + 1) for c in reversed(nodes[at].children))
    return out

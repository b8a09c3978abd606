"""The containers a self-test reaches: every running container in the runc state roots (podman,
runc, Docker's and containerd's runc), named and grouped as the sensor would name them, and how
to run a command in each through its own runtime (``podman exec``, else ``runc exec``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from runwatch.enrich.containers import ContainerResolver
from runwatch.enrich.workload import WorkloadJoin
from runwatch.events import Container
from runwatch.host import runtimes


@dataclass(frozen=True)
class Target:
    """One running container: its facts (as events carry them) and where its runtime keeps it."""

    container: Container
    state_root: str  # the runc root directory holding its state (runc --root)
    init_pid: int

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def label(self) -> str:
        """How a report names it: its name (and pod), with the short id."""
        c = self.container
        name = f"{c.pod}/{c.name}" if c.pod and c.name else c.name or c.id[:12]
        return f"{name} ({c.id[:12]})"

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """The host command that runs ``argv`` inside the container through its runtime."""
        if self.container.runtime == "podman" and shutil.which("podman"):
            return ["podman", "exec", self.id, *argv]
        return [shutil.which("runc") or "runc", "--root", self.state_root, "exec", self.id, *argv]


def running(roots: runtimes.Roots = runtimes.DEFAULT_RUNC_ROOTS, resolver: ContainerResolver | None = None,
            join: WorkloadJoin | None = None) -> list[Target]:
    """Every running container under ``roots`` (one per id), ordered by pod, name and id."""
    resolver = resolver if resolver is not None else ContainerResolver(runc_roots=roots)
    join = join if join is not None else WorkloadJoin()
    found: dict[str, Target] = {}
    for root, runtime in roots:
        for parent in runtimes.parents_of(root):
            for path in runtimes.subdirs(parent):
                state = runtimes.read_state(path, runtime)
                if state is None or state.init_pid is None or state.id in found:
                    continue
                if not os.path.exists(f"/proc/{state.init_pid}"):
                    continue  # stopped: its state stays until it is deleted
                c = resolver.resolve_pid(state.init_pid)
                if c is None or c.id != state.id:
                    continue
                found[state.id] = Target(join(c), parent, state.init_pid)
    return sorted(found.values(), key=lambda t: (t.container.pod or "", t.container.name or "", t.id))


def select(targets: Sequence[Target], pods: Sequence[str] = (), containers: Sequence[str] = (),
           every: bool = False) -> list[Target]:
    """The targets in scope: ``every`` one, or those of the named pods and containers (a container
    by name, id, or id prefix of at least 4 characters)."""
    if every:
        return list(targets)
    out = []
    for t in targets:
        c = t.container
        if c.pod in pods or any(w in (c.name, c.id) or (len(w) >= 4 and c.id.startswith(w)) for w in containers):
            out.append(t)
    return out

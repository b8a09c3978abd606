"""The enrichment stage: process tree and container attribution applied to each batch."""

from __future__ import annotations

from collections import OrderedDict

from runwatch.enrich.containers import ContainerResolver
from runwatch.enrich.proctree import ProcessTree
from runwatch.enrich.roles import role_from_container
from runwatch.enrich.runtime import RuntimeTracker
from runwatch.enrich.users import UserNames
from runwatch.enrich.workload import WorkloadJoin
from runwatch.events import IDENTITY_SOURCES, SPAWNED_ATTR, Event
from runwatch.svid.attest import Attestor, is_svid_event


class Enrichment:
    """Fills ancestry, exe/cmdline, container (with its workload facts and SPIFFE id, see
    :mod:`runwatch.enrich.workload`) and its declared role on every event, in arrival order,
    and on kernel and proc events the user names from the container's own passwd.

    Each event is enriched before it updates the tree, so an exit still sees the exe of
    the process that exits; an exec updates the tree first, since it may be the first the
    tree hears of a process whose fork was not reported. Only the kernel and the proc
    fallback change the tree (:data:`~runwatch.events.IDENTITY_SOURCES`): what the audit hook,
    the SDK and OTLP report is enriched from the tree and never rewrites a process. Not
    thread safe: the pipeline's consumer thread owns it.
    """

    def __init__(self, tree: ProcessTree | None = None, containers: ContainerResolver | None = None,
                 seed: bool = True, max_pids: int = 65536, runtime: RuntimeTracker | None = None,
                 workload: WorkloadJoin | None = None, users: UserNames | None = None,
                 attestor: Attestor | None = None) -> None:
        self.tree = tree if tree is not None else ProcessTree()
        # Marks events of the container runtime by its binary's inode (attrs.exe_is_runtime).
        self.runtime = runtime if runtime is not None else RuntimeTracker()
        self.containers = containers if containers is not None else ContainerResolver()
        self.workload = workload if workload is not None else WorkloadJoin()
        """Adds runtime (podman), Kubernetes and SPIFFE facts to each resolved container."""
        self.attestor = attestor if attestor is not None else Attestor()
        """Verifies the SVIDs agents report and records them on their containers (runwatch.svid.attest)."""
        self.workload.attested = self.attestor.ids
        self.users = users if users is not None else UserNames(self.tree.proc_root)
        # The last cgroup the kernel saw each pid in: AI events (SDK, OTLP, audit hooks) from
        # a process that exited before its cgroup could be read still get their container.
        self._cgroup_of: OrderedDict[int, int] = OrderedDict()
        self._max_pids = max_pids
        if seed:
            self.tree.seed_from_proc()

    def __call__(self, batch: list[Event]) -> list[Event]:
        tree, containers, runtime = self.tree, self.containers, self.runtime
        if any(e.kind == "cgroup.mkdir" for e in batch):
            for e in batch:
                if e.kind == "cgroup.mkdir" and e.attrs:
                    containers.learn(int(e.attrs["cgroup_id"]), str(e.attrs["path"]))
            batch = [e for e in batch if e.kind != "cgroup.mkdir"]
        for event in batch:
            if event.source not in IDENTITY_SOURCES:
                self._context_event(event)
            elif event.kind == "process.exec":
                tree.apply(event)  # the exec itself may be the first the tree hears of this pid
                tree.enrich(event)
                runtime.observe(event)
            else:
                tree.enrich(event)
                runtime.observe(event)
                tree.apply(event)
            if event.cgroup_id and event.source == "kernel" and event.pid > 0:
                self._remember(event.pid, event.cgroup_id)
            if event.container is None:
                if event.cgroup_id:
                    event.container = containers.resolve(event.cgroup_id)
                elif event.source == "proc" and event.pid > 0:
                    event.container = containers.resolve_pid(event.pid)
                elif event.pid > 0 and event.pid in self._cgroup_of:
                    event.container = containers.resolve(self._cgroup_of[event.pid])
                if event.container is not None:
                    raw = event.container
                    event.container = self.workload(raw)
                    if is_svid_event(event):
                        self.attestor(event, self.workload.facts(raw))
            if is_svid_event(event) and event.container is None:
                self.attestor(event, None)
            role_from_container(event)
            if event.pid > 0 and event.source in IDENTITY_SOURCES:
                self.users.enrich(event)
        return batch

    def _context_event(self, event: Event) -> None:
        """Enrich an event of a context source (audit hook, SDK, OTLP) without changing the tree.

        An audited exec that runs in a child describes that child: its parent is the caller
        and its ancestry starts with the caller, as the kernel's exec of the child will say.
        """
        tree = self.tree
        if event.kind == "process.exec" and event.attrs and event.attrs.get(SPAWNED_ATTR) and event.pid > 0:
            caller = tree.lookup(event.pid)
            if caller is not None:
                event.ppid = event.pid
                if not event.ancestry:
                    event.ancestry = [caller.label, *tree.ancestry(event.pid)]
                return
        tree.enrich(event)

    def _remember(self, pid: int, cgroup_id: int) -> None:
        known = self._cgroup_of
        if known.get(pid) != cgroup_id:
            known[pid] = cgroup_id
        known.move_to_end(pid)
        if len(known) > self._max_pids:
            known.popitem(last=False)

    def stats(self) -> dict[str, int]:
        """Process-tree and container-cache counters, prefixed."""
        out = {f"proctree.{k}": v for k, v in self.tree.stats().items()}
        out.update({f"containers.{k}": v for k, v in self.containers.stats().items()})
        out.update({f"users.{k}": v for k, v in self.users.stats().items()})
        out.update({f"svid.{k}": v for k, v in self.attestor.stats().items()})
        return out

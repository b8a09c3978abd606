"""One process identity: the kernel (and the proc fallback) say what a process is; the audit
hook and the SDK add context and never rewrite a process's exe, cmdline or ancestry."""

from __future__ import annotations

from runwatch.enrich.containers import ContainerResolver
from runwatch.enrich.proctree import ProcessTree
from runwatch.enrich.stage import Enrichment
from runwatch.events import SPAWNED_ATTR, Event, FileInfo, new_id

SEC = 1_000_000_000
T0 = 1_800_000_000 * SEC
AGENT, SHELL = 40_123, 40_131
PYTHON = "/usr/bin/python3.13"


def ev(kind: str, pid: int, t: int, source: str = "kernel", **kw: object) -> Event:
    return Event(id=new_id(t), time=t, kind=kind, pid=pid, source=source, **kw)  # type: ignore[arg-type]


def stage() -> Enrichment:
    tree = ProcessTree(proc_fallback=False)
    return Enrichment(tree=tree, containers=ContainerResolver(), seed=False)


def agent_started(enrich: Enrichment) -> None:
    enrich([ev("process.fork", 1, T0, child_pid=AGENT, exe="/usr/bin/bash", comm="bash"),
            ev("process.exec", AGENT, T0 + 1, ppid=1, exe=PYTHON, exec_name="/usr/bin/python3",
               cmdline="python3 agent.py", argv=["python3", "agent.py"], comm="python3")])


def test_an_audited_exec_leaves_the_asking_process_as_it_was() -> None:
    enrich = stage()
    agent_started(enrich)
    asked = ev("process.exec", AGENT, T0 + 2 * SEC, source="audit", exe="/usr/bin/dash", exec_name="/bin/sh",
               cmdline="/bin/sh -c true", argv=["/bin/sh", "-c", "true"], attrs={"via": "audit"})
    later = ev("file.open", AGENT, T0 + 3 * SEC, file=FileInfo(path="/run/secrets/db", intent="read"))
    enrich([asked])
    enrich([later])
    assert later.exe == PYTHON
    assert later.cmdline == "python3 agent.py"
    rec = enrich.tree.get(AGENT)
    assert rec is not None and rec.exe == PYTHON


def test_an_audited_spawn_is_a_child_of_the_process_that_asked() -> None:
    enrich = stage()
    agent_started(enrich)
    asked = ev("process.exec", AGENT, T0 + 2 * SEC, source="audit", exe="/usr/bin/dash", exec_name="/bin/sh",
               cmdline="/bin/sh -c true", argv=["/bin/sh", "-c", "true"],
               attrs={"via": "audit", "audit_event": "subprocess.Popen", SPAWNED_ATTR: True})
    enrich([asked])
    # The exec it reports runs in a child: its parent is the agent, as the kernel will say.
    assert asked.exe == "/usr/bin/dash"
    assert asked.ppid == AGENT
    assert asked.ancestry == [PYTHON, "/usr/bin/bash"]


def test_an_audited_os_exec_replaces_the_image_in_place() -> None:
    enrich = stage()
    agent_started(enrich)
    asked = ev("process.exec", AGENT, T0 + 2 * SEC, source="audit", exe="/usr/bin/dash", exec_name="/bin/sh",
               cmdline="/bin/sh", argv=["/bin/sh"], attrs={"via": "audit", "audit_event": "os.exec"})
    enrich([asked])
    assert asked.ppid == 1
    assert asked.ancestry == ["/usr/bin/bash"]
    rec = enrich.tree.get(AGENT)
    assert rec is not None and rec.exe == PYTHON  # only the kernel's exec changes the tree


def test_sdk_and_otlp_process_events_never_touch_the_tree() -> None:
    enrich = stage()
    agent_started(enrich)
    for source in ("sdk", "otlp", "audit"):
        enrich([ev("process.exit", AGENT, T0 + 2 * SEC, source=source)])
        enrich([ev("process.fork", AGENT, T0 + 2 * SEC, source=source, child_pid=SHELL)])
    rec = enrich.tree.get(AGENT)
    assert rec is not None and rec.exit_time is None
    assert enrich.tree.get(SHELL) is None

"""The enrichment stage gives AI events the container the kernel last saw their process in."""

from __future__ import annotations

from runwatch.enrich.stage import Enrichment
from runwatch.events import Container, Event, ToolCall

AGENT = Container(id="rw-0123456789ab", runtime="runc", name="agent", cgroup="/runwatch/rw-0123456789ab")


class Resolver:
    """A ContainerResolver stand-in knowing one cgroup id (its directory is long gone)."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def resolve(self, cgroup_id: int) -> Container | None:
        self.asked.append(cgroup_id)
        return AGENT if cgroup_id == 23023 else None

    def resolve_pid(self, pid: int) -> Container | None:
        return None

    def learn(self, cgroup_id: int, path: str) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {}


def test_sdk_event_of_an_exited_agent_gets_the_container_from_its_kernel_events() -> None:
    resolver = Resolver()
    stage = Enrichment(containers=resolver, seed=False)  # type: ignore[arg-type]
    kernel = Event(id="k1", time=1, kind="process.exec", pid=4242, exe="/usr/bin/python3", cgroup_id=23023)
    exit_ = Event(id="k2", time=2, kind="process.exit", pid=4242, cgroup_id=23023, exit_code=0)
    # The collector read the message after the agent exited: no cgroup, no container.
    sdk = Event(id="s1", time=3, kind="tool.start", source="sdk", pid=4242,
                tool_call=ToolCall(name="read_file", call_id="c-1"))
    other = Event(id="s2", time=4, kind="tool.start", source="sdk", pid=777,
                  tool_call=ToolCall(name="read_file", call_id="c-2"))
    out = stage([kernel, exit_]) + stage([sdk, other])
    assert [e.container for e in out] == [AGENT, AGENT, AGENT, None]
    assert sdk.cgroup_id is None  # not invented: only the container is filled


def test_events_take_the_role_their_container_declares() -> None:
    import msgspec

    declared = msgspec.structs.replace(AGENT, role="plugin-runner")

    class Declared(Resolver):
        def resolve(self, cgroup_id: int) -> Container | None:
            return declared if cgroup_id == 23023 else None

    stage = Enrichment(containers=Declared(), seed=False)  # type: ignore[arg-type]
    inside = Event(id="k1", time=1, kind="process.exec", pid=4242, exe="/usr/bin/python3", cgroup_id=23023)
    host = Event(id="k2", time=2, kind="process.exec", pid=5151, exe="/bin/sh", cgroup_id=1)
    out = stage([inside, host])
    assert [(e.id, e.role) for e in out] == [("k1", "plugin-runner"), ("k2", None)]

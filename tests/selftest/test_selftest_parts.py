"""The self-test's parts without a sensor: which event proves which canary, the verdicts, the
report's text and JSON, the scope selection, and the session's container drop filter."""

from __future__ import annotations

import json

from runwatch.events import Container, DnsInfo, Event, FileInfo, NetInfo
from runwatch.selftest import canaries as cn
from runwatch.selftest.report import CanaryResult, ContainerResult, Report, Scope, render_text, to_json, verdict
from runwatch.selftest.targets import Target, select
from runwatch.session import _ContainerFilter

TOKEN = cn.Token("0a1b2c3d4e5f", 40123)
C = Container(id="f1" * 32, runtime="podman", name="app", pod="shop")


def ev(kind: str, **kw: object) -> Event:
    return Event(id="e", time=1, kind=kind, pid=7, container=C, **kw)  # type: ignore[arg-type]


def test_each_canary_matches_its_own_event_and_not_its_neighbours() -> None:
    by = {c.name: c for c in cn.CANARIES}
    assert [c.name for c in cn.CANARIES] == ["exec", "file", "connect", "dns"]
    assert by["exec"].seen(ev("process.exec", cmdline="/bin/sh -c exit 0 runwatch-selftest-exec-0a1b2c3d4e5f"), TOKEN)
    # the file canary's own shell names the file, not the exec marker
    assert not by["exec"].seen(ev("process.exec", cmdline=" ".join(by["file"].argv(TOKEN))), TOKEN)
    path = "/run/secrets/runwatch-selftest-0a1b2c3d4e5f"
    assert by["file"].seen(ev("file.open", file=FileInfo(path, intent="read")), TOKEN)
    assert not by["file"].seen(ev("file.open", file=FileInfo(path, intent="write")), TOKEN)  # the set-up's write
    assert by["connect"].seen(ev("net.connect", net=NetInfo("tcp", "ipv4", dst_ip="127.0.0.1", dst_port=40123,
                                                            result=-111)), TOKEN)
    assert not by["connect"].seen(ev("net.connect", net=NetInfo("tcp", "ipv4", dst_ip="127.0.0.1", dst_port=40125)),
                                  TOKEN)
    assert by["dns"].seen(ev("dns.query", dns=DnsInfo("0a1b2c3d4e5f.runwatch-selftest.invalid.")), TOKEN)
    assert not by["dns"].seen(ev("dns.query", dns=DnsInfo("other.runwatch-selftest.invalid")), TOKEN)
    assert cn.cleanup_argv(TOKEN, True)[-1] == f"rm -f {path}; rmdir /run/secrets 2>/dev/null; exit 0"


def r(status: str) -> CanaryResult:
    return CanaryResult(kind="k", status=status, delay_ms=41 if status == "seen" else None)


def test_verdicts() -> None:
    assert verdict({"a": r("seen"), "b": r("not run"), "c": r("not covered")}) == "ok"
    assert verdict({"a": r("seen"), "b": r("missed"), "c": r("missed")}) == "partial"
    assert verdict({"a": r("missed"), "b": r("not run"), "c": r("missed")}) == "blind"


def test_report_text_and_json_name_the_blind_container() -> None:
    rows = [ContainerResult(id="a1" * 32, name="app", pod="shop", runtime="podman", privileged=False,
                            devices=["/dev/nvidia0"], gpu=1, canaries={"exec": r("seen"), "dns": r("not covered")},
                            result="ok"),
            ContainerResult(id="b2" * 32, name="proxy", pod="shop", runtime="podman", privileged=True, devices=[],
                            gpu=None, canaries={"exec": r("missed"), "dns": r("not covered")}, result="blind")]
    scope = Scope(source="kernel", hooks_active=73, hooks_refused={"rw_dns": "attach failed"},
                  kinds_not_seen=["dns.query"], notices=[])
    report = Report(scope=scope, containers=rows, blind=["shop/proxy (b2b2b2b2b2b2)"])
    assert not report.ok
    assert render_text(report).splitlines() == [
        "sources on: kernel (73 hook(s) active)",
        "hooks refused by the kernel: rw_dns (attach failed)",
        "event kinds not seen on this host: dns.query",
        "CONTAINER                                  POD   RUNTIME  EXEC       DNS          RESULT",
        "app (a1a1a1a1a1a1) [devices=/dev/nvidia0]  shop  podman   seen 41ms  not covered  ok",
        "proxy (b2b2b2b2b2b2) [privileged]          shop  podman   missed     not covered  blind",
        "selftest FAILED: blind or partly blind: shop/proxy (b2b2b2b2b2b2)"]
    data = json.loads(to_json(report))
    assert list(data) == ["scope", "containers", "blind"]
    assert data["containers"][0]["canaries"]["exec"] == {"kind": "k", "status": "seen", "delay_ms": 41,
                                                         "detail": None}


def test_scope_selection_by_pod_name_and_id_prefix() -> None:
    ts = [Target(Container(id=i * 32, runtime="runc", name=n, pod=p), "/run/runc", 1)
          for i, n, p in (("a1", "app", "shop"), ("b2", "proxy", "shop"), ("c3", "etl", None))]
    assert [t.container.name for t in select(ts, pods=["shop"])] == ["app", "proxy"]
    assert [t.container.name for t in select(ts, containers=["etl", "b2b2"])] == ["proxy", "etl"]
    assert select(ts, containers=["b2b"]) == []  # a prefix needs 4 characters
    assert len(select(ts, every=True)) == 3
    assert ts[2].exec_argv(["true"])[-4:] == ["/run/runc", "exec", "c3" * 32, "true"]
    assert ts[0].label == f"shop/app ({'a1' * 6})"


def test_the_drop_filter_keeps_every_other_event() -> None:
    other = Container(id="d4" * 32, runtime="runc", name="db")
    batch = [ev("process.exec"), Event(id="h", time=1, kind="process.exec", pid=1),
             Event(id="o", time=1, kind="process.exec", pid=2, container=other)]
    assert [e.id for e in _ContainerFilter(("f1f1",), keep=False)(batch)] == ["h", "o"]
    assert [e.id for e in _ContainerFilter(("f1f1",))(batch)] == ["e"]

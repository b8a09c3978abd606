"""Every per-kind table is derived from the one event table (runwatch.eventkinds)."""

from __future__ import annotations

import ctypes

import pytest

from runwatch import eventkinds
from runwatch.enrich.aicontext import ACTIVITY_KINDS
from runwatch.eventkinds import TABLE, KindSpec, Probe
from runwatch.events import KINDS, Event, NetInfo
from runwatch.outputs.ocsf import to_ocsf
from runwatch.rules.fields import FIELDS, fields_for_kind, kinds_for_field
from runwatch.rules.importers.falco_cond import SYSCALL_KINDS
from runwatch.sensors.kernel import layout as L
from runwatch.sensors.kernel.decode import Decoder
from runwatch.sensors.kernel.loader import PROGRAMS, LoadReport


def test_kinds_are_the_table_in_order() -> None:
    assert tuple(k.name for k in TABLE) == KINDS
    assert len(KINDS) == len(set(KINDS)) == 42
    assert KINDS[:3] == ("process.exec", "process.fork", "process.exit") and KINDS[26] == "cgroup.mkdir"
    assert KINDS[27:] == ("file.link", "file.symlink", "file.chmod", "file.mkdir", "file.rmdir", "net.socket",
                          "net.redirect", "priv.module_load", "priv.bpf_load", "priv.userfaultfd",
                          "priv.io_uring_setup", "process.exec_failed", "net.send", "process.env", "dns.answer")
    assert [k.name for k in TABLE if k.group == "ai"] == [
        "tool.start", "tool.end", "model.call", "plugin.load", "secret.access"]
    assert [k.name for k in TABLE if not k.stored] == ["cgroup.mkdir", "process.env"]


def test_kernel_programs_come_from_the_table() -> None:
    assert len(PROGRAMS) == 77
    by_kind: dict[str, list[str]] = {}
    for p in PROGRAMS:
        assert len(p.provides) == 1
        by_kind.setdefault(p.provides[0], []).append(p.name)
    assert by_kind["net.connect"] == ["rw_connect_enter", "rw_connect_exit", "rw_uring_connect"]
    assert by_kind["dns.query"] == ["rw_sendto", "rw_sendmsg", "rw_sendmmsg", "rw_connect_dns", "rw_write_dns",
                                    "rw_send_dns"]
    assert by_kind["file.open"] == [
        "rw_openat_exit", "rw_open_exit", "rw_openat2_exit", "rw_creat_exit", "rw_open_by_handle_at_exit",
        "rw_uring_open"]
    hooks = {p.name: p.hook for p in PROGRAMS}
    assert hooks["rw_accept4_exit"] == "tracepoint/syscalls/sys_exit_accept4"
    assert hooks["rw_memfd"] == "tracepoint/syscalls/sys_enter_memfd_create"
    assert hooks["rw_exec"] == "tp_btf/sched_process_exec"
    assert hooks["rw_socket_exit"] == "tracepoint/syscalls/sys_exit_socket"
    assert by_kind["file.chmod"] == ["rw_chmod", "rw_fchmodat", "rw_fchmodat2", "rw_fchmod"]
    assert by_kind["process.exec_failed"] == ["rw_execve_enter", "rw_execve_exit", "rw_execveat_enter",
                                              "rw_execveat_exit"]
    assert set(by_kind) == {k.name for k in eventkinds.kernel_kinds()} and len(by_kind) == 35
    # the load report's kind accounting reads the same table
    report = LoadReport(active={"rw_open_exit": "x", "rw_exit": "y"})
    assert report.kinds_active() == {"file.open", "process.exit"}
    assert len(report.kinds_lost()) == 33 and "file.open" not in report.kinds_lost()


def test_every_kernel_record_kind_has_one_table_entry() -> None:
    records = [k.record for k in eventkinds.kernel_kinds()]
    assert sorted(records, key=lambda r: L.Kind[r or ""]) == [m.name for m in L.Kind]


@pytest.mark.parametrize("spec", eventkinds.kernel_kinds(), ids=lambda k: k.name)
def test_the_decoder_dispatches_by_the_table(spec: KindSpec) -> None:
    code = L.Kind[spec.record or ""]
    record = L.RECORDS[{"exec": "rw_exec", "fork": "rw_fork", "exit": "rw_exit", "net": "rw_net", "dns": "rw_dns",
                        "file": "rw_file", "priv": "rw_priv", "cgroup": "rw_cgroup", "sock": "rw_sock",
                        "exec_failed": "rw_file", "dns_answer": "rw_dns", "exec_env": "rw_env"}[spec.decoder or ""]]()
    record.h.kind, record.h.size, record.h.pid, record.h.ts = code, ctypes.sizeof(record), 4111, 23
    event = Decoder(clock_offset=1000).decode(bytes(record))
    assert (event.kind, event.pid, event.time) == (spec.name, 4111, 1023)


@pytest.mark.parametrize("spec", TABLE, ids=lambda k: k.name)
def test_ocsf_class_and_activity_come_from_the_table(spec: KindSpec) -> None:
    net = NetInfo(proto="tcp", family="ipv4", result=0) if spec.group == "network" else None
    out = to_ocsf(Event(id="e1", time=23_000_000, kind=spec.name, pid=7, net=net), hostname="h")
    class_uid, activity_id, name = spec.ocsf
    assert (out["class_uid"], out["activity_id"], out["activity_name"]) == (class_uid, activity_id, name or spec.name)
    assert out["type_uid"] == class_uid * 100 + activity_id


def test_falco_syscalls_and_join_activity_come_from_the_table() -> None:
    assert eventkinds.syscall_kinds() == SYSCALL_KINDS
    assert len(SYSCALL_KINDS) == 57
    assert SYSCALL_KINDS["dup"] == "net.redirect"
    assert (SYSCALL_KINDS["execveat"], SYSCALL_KINDS["clone3"], SYSCALL_KINDS["creat"]) == (
        "process.exec", "process.fork", "file.open")
    assert SYSCALL_KINDS["sendto"] == "net.send"  # dns.query stands for no single syscall
    assert len(ACTIVITY_KINDS) == 30 and "process.fork" not in ACTIVITY_KINDS and "tool.start" not in ACTIVITY_KINDS


def test_rule_fields_per_kind_come_from_what_the_kind_carries() -> None:
    fork = fields_for_kind("process.fork")
    assert "proc.child_pid" in fork and "proc.exit_code" not in fork and "file.path" not in fork
    assert "tool.name" not in fork  # fork is bookkeeping: the join attaches no tool call to it
    exec_ = fields_for_kind("process.exec")
    assert {"proc.exe", "tool.name", "tool.unattested", "container.id"} <= set(exec_)
    assert not any(f.startswith(("net.", "ai.", "priv.")) for f in exec_)
    assert {"ai.route", "ai.args_digest", "tool.call_id"} <= set(fields_for_kind("tool.start"))
    assert kinds_for_field("ai.secret_kind") == (
        "tool.start", "tool.end", "model.call", "plugin.load", "secret.access", "policy.decision")
    assert kinds_for_field("net.dst.port") == ("net.connect", "net.accept", "net.listen", "net.bind", "net.socket",
                                               "net.redirect", "net.send")
    assert fields_for_kind("vendor.custom") == tuple(FIELDS)


def test_table_names_only_real_event_attributes() -> None:
    attrs = set(Event.__struct_fields__)
    assert {c for k in TABLE for c in k.carries} <= attrs
    assert {f.reads for f in FIELDS.values() if f.reads is not None} <= attrs


def test_a_malformed_table_is_refused() -> None:
    one = KindSpec("x.y", "process", (0, 99, None))
    with pytest.raises(ValueError, match=r"^event kind 'x.y' is declared twice$"):
        eventkinds._check((one, one))
    with pytest.raises(ValueError, match=r"^event kind 'x.z': unknown group 'proc'$"):
        eventkinds._check((KindSpec("x.z", "proc", (0, 99, None)),))
    with pytest.raises(ValueError, match=r"needs a decoder"):
        eventkinds._check((KindSpec("x.w", "file", (0, 99, None), record="OPEN"),))
    shared = (Probe("rw_a", "tp/a"),)
    with pytest.raises(ValueError, match=r"^BPF program 'rw_a' is declared for two kinds$"):
        eventkinds._check((KindSpec("a.a", "file", (0, 99, None), programs=shared),
                           KindSpec("a.b", "file", (0, 99, None), programs=shared)))

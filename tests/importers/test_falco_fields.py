"""The Falco fields runwatch now carries: their translation, their values, the data behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runwatch.enrich.proctree import ProcessTree
from runwatch.enrich.users import UserNames, parse_passwd
from runwatch.events import Container, Event, FileInfo, PrivInfo
from runwatch.host import runtimes
from runwatch.linuxnames import cap_names, mode_names, open_flag_names
from runwatch.rules import Engine, load_texts
from runwatch.rules.fields import EvalCtx, resolve_field
from runwatch.rules.importers import import_rules
from runwatch.testing.fixtures import fixture_path, require_fixture

T0 = 1_700_000_000_000_000_000


def translate(tmp_path: Path, condition: str) -> str:
    (tmp_path / "r.yaml").write_text(f"- rule: R\n  desc: d\n  condition: {condition}\n  output: o\n"
                                     "  priority: WARNING\n")
    (rec,) = import_rules([tmp_path / "r.yaml"], "falco").rules
    assert rec.status == "loaded", rec.reason
    assert load_texts([(rec.yaml, "r.yaml")]).errors == []
    return str(rec.entry["condition"])


@pytest.mark.parametrize(("falco", "runwatch"), [
    ("evt.type = execve and proc.pcmdline contains java", 'kind = process.exec and proc.pcmdline contains "java"'),
    ("evt.type = execve and proc.duration <= 5000000000", 'kind = process.exec and proc.duration <= "5000000000"'),
    ("evt.type = execve and proc.tty != 0", 'kind = process.exec and proc.tty != "0"'),
    ("evt.type = execve and user.name in (daemon, nobody)",
     'kind = process.exec and proc.user in ("daemon", "nobody")'),
    ("evt.type = execve and user.name in (root, nobody)",
     'kind = process.exec and (proc.uid = 0 or proc.user in ("nobody"))'),
    ("evt.type = execve and user.name != www-data", 'kind = process.exec and not proc.user = "www-data"'),
    ("evt.type = execve and user.loginuid = -1", 'kind = process.exec and proc.loginuid = "-1"'),
    ("evt.type = openat and thread.cap_effective contains CAP_SYS_ADMIN",
     'kind = file.open and proc.cap_effective_names contains "CAP_SYS_ADMIN"'),
    ("evt.type = unshare and not thread.cap_permitted contains CAP_SYS_ADMIN",
     'kind = priv.unshare and not proc.cap_permitted_names contains "CAP_SYS_ADMIN"'),
    ("evt.type = chmod and evt.arg.mode contains S_ISUID", 'kind = file.chmod and file.mode_names contains "S_ISUID"'),
    ("evt.type = bpf and evt.arg.cmd = BPF_PROG_LOAD", "kind = priv.bpf_load and kind = priv.bpf_load"),
    ("evt.type = connect and fd.sockfamily = ip", 'kind = net.connect and net.family in ("ipv4", "ipv6")'),
    ("evt.type = execve and container.image.repository in (a/b, c/d)",
     'kind = process.exec and container.image_repository in ("a/b", "c/d")'),
    ("evt.type = execve and container.privileged = true", "kind = process.exec and container.privileged = true"),
    ("evt.type = execve and proc.is_exe_from_memfd = true", "kind = process.exec and proc.exe_memfd = true"),
    ("evt.type = execve and proc.is_exe_upper_layer = false",
     "kind = process.exec and proc.exe_upper_layer = false"),
    ("evt.type = openat and evt.arg.flags contains O_TRUNC", 'kind = file.open and file.flag_names contains "O_TRUNC"'),
    ("evt.type = socket and evt.arg.domain contains AF_PACKET", 'kind = net.socket and net.family = "packet"'),
    ("evt.type = openat and fd.num = -1", "kind = file.open and file.result < 0"),
    ("evt.type = dup2 and evt.rawres in (0, 1, 2)", 'kind = net.redirect and evt.attr[fd] in ("0", "1", "2")'),
    ("evt.type = setuid and evt.arg.uid != root", 'kind = priv.setuid and priv.uid != "0"'),
    ("evt.type = setuid and evt.arg.uid = nobody", 'kind = priv.setuid and priv.user = "nobody"'),
    ('evt.type = execve and not user.name in ("<NA>", "N/A", "")', "kind = process.exec and proc.user exists"),
])
def test_translation(tmp_path: Path, falco: str, runwatch: str) -> None:
    assert translate(tmp_path, falco) == runwatch


def test_fd_nameraw_is_not_the_canonical_path(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("- rule: R\n  desc: d\n  condition: evt.type = openat and fd.nameraw contains "
                                     "'../'\n  output: o\n  priority: WARNING\n")
    (rec,) = import_rules([tmp_path / "r.yaml"], "falco").rules
    assert rec.reason == ("field fd.nameraw has no runwatch counterpart (runwatch reports the canonical path, "
                          "never the path as passed)")


def value(field: str, e: Event) -> object:
    spec = resolve_field(field)
    assert spec is not None
    return spec.get(e, EvalCtx())


def test_field_values() -> None:
    e = Event(id="e1", time=T0 + 7_000_000_000, kind="process.exec", exe="memfd:payload", proc_start=T0,
              cap_effective=(1 << 21) | (1 << 16) | 1, exe_upper_layer=True, tty=34816, user="nobody",
              container=Container(id="c", runtime="runc", image_repository="docker.io/sysdig/sysdig",
                                  privileged=True))
    assert value("proc.duration", e) == 7_000_000_000
    assert value("proc.cap_effective_names", e) == "CAP_CHOWN CAP_SYS_MODULE CAP_SYS_ADMIN"
    assert (value("proc.exe_memfd", e), value("proc.exe_upper_layer", e)) == (True, True)
    assert (value("proc.tty", e), value("proc.user", e)) == (34816, "nobody")
    assert (value("container.image_repository", e), value("container.privileged", e)) == (
        "docker.io/sysdig/sysdig", True)
    opened = Event(id="e2", time=T0, kind="file.open", file=FileInfo(path="/var/log/syslog", flags=0o1101))
    failed = Event(id="e3", time=T0, kind="file.open", file=FileInfo(path="/etc/shadow", flags=0),
                   attrs={"result": -13})
    assert value("file.flag_names", opened) == "O_WRONLY|O_CREAT|O_TRUNC"
    assert (value("file.result", opened), value("file.result", failed)) == (0, -13)
    chmod = Event(id="e4", time=T0, kind="file.chmod", file=FileInfo(path="/x", flags=0o2750))
    assert (value("file.mode_names", chmod), value("file.mode_names", opened)) == (
        "S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISGID", None)


def test_linux_names() -> None:
    assert cap_names(0) == ""
    assert cap_names(1 << 40 | 1 << 41) == "CAP_CHECKPOINT_RESTORE CAP_41"
    assert open_flag_names(0o2) == "O_RDWR"
    assert mode_names(0o4755) == "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"
    assert mode_names(0) == ""
    assert open_flag_names(0o2002101) == "O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC"


def test_image_references_split() -> None:
    assert runtimes.split_image("docker.io/library/nginx:1.27@sha256:" + "0f" * 32) == (
        "docker.io/library/nginx", "1.27", "sha256:" + "0f" * 32)
    assert runtimes.split_image("localhost:5000/app") == ("localhost:5000/app", None, None)
    assert runtimes.split_image("busybox") == ("busybox", None, None)


def test_privileged_from_the_oci_config() -> None:
    privileged = {"linux": {"resources": {"devices": [{"allow": True, "access": "rwm"}]}}}
    masked = {"linux": {"resources": {"devices": [{"allow": True, "access": "rwm"}]}, "maskedPaths": ["/proc/kcore"]}}
    denied = {"linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}]}}}
    podman = {"linux": {}, "annotations": {runtimes.PODMAN_PRIVILEGED: "TRUE"}}
    assert [runtimes.spec_privileged(s) for s in (privileged, masked, denied, podman, {})] == [
        True, False, False, True, None]


def test_bundle_privileged_reads_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"linux": {"resources": {"devices": [{"allow": True}]}}}))
    assert runtimes.bundle_privileged(str(tmp_path)) is True
    assert runtimes.bundle_privileged(str(tmp_path / "absent")) is None


def test_passwd_names_per_container(tmp_path: Path) -> None:
    assert parse_passwd("# c\nroot:x:0:0::/:/bin/sh\nuser:x:1000:1000::/:/bin/sh\nalias:x:1000:1\nbad\n+nis\n") == {
        0: "root", 1000: "user"}
    proc = tmp_path / "proc"
    for pid, name in ((41, "app"), (43, "other")):
        (proc / str(pid) / "root" / "etc").mkdir(parents=True)
        (proc / str(pid) / "root" / "etc" / "passwd").write_text(f"{name}:x:1000:1000::/:/bin/sh\n")
    users = UserNames(str(proc))
    a = Event(id="a", time=T0, kind="process.exec", pid=41, uid=1000, loginuid=1000,
              container=Container(id="ca", runtime="runc"))
    b = Event(id="b", time=T0, kind="process.exec", pid=43, uid=1000, loginuid=0xFFFFFFFF,
              container=Container(id="cb", runtime="runc"))
    users.enrich(a)
    users.enrich(b)
    assert (a.user, a.login_user, b.user, b.login_user) == ("app", "app", "other", None)
    setuid = Event(id="s", time=T0, kind="priv.setuid", pid=41, uid=0, container=Container(id="ca", runtime="runc"),
                   priv=PrivInfo(op="setuid", uid=1000, euid=1000))
    users.enrich(setuid)
    assert (setuid.user, setuid.priv is not None and setuid.priv.user) == (None, "app")  # uid 0: no root line
    gone = Event(id="c", time=T0, kind="file.open", pid=47, uid=1000, container=Container(id="ca", runtime="runc"))
    users.enrich(gone)  # a process already gone: the container's map, read once, still names it
    assert gone.user == "app"
    assert users.stats()["passwd_reads"] == 2


def test_process_facts_follow_the_process(tmp_path: Path) -> None:
    tree = ProcessTree(proc_fallback=False, proc_root=str(tmp_path))
    tree.apply(Event(id="x", time=T0, kind="process.exec", pid=50, ppid=1, exe="/bin/sh", cmdline="sh -c run",
                     tty=34817, loginuid=1000, cap_effective=0x3))
    tree.apply(Event(id="f", time=T0 + 10, kind="process.fork", pid=50, child_pid=51))
    child_exec = Event(id="y", time=T0 + 20, kind="process.exec", pid=51, ppid=50, exe="/bin/cat",
                       cmdline="cat x", cap_effective=0x1)
    tree.apply(child_exec)
    tree.enrich(child_exec)
    assert (child_exec.pcmdline, child_exec.proc_start, child_exec.tty, child_exec.loginuid) == (
        "sh -c run", T0 + 10, 34817, 1000)
    tree.apply(Event(id="c", time=T0 + 30, kind="priv.capset", pid=51,
                     priv=PrivInfo(op="capset", cap_effective=0x21)))
    later = Event(id="o", time=T0 + 40, kind="file.open", pid=51, file=FileInfo(path="/x"))
    tree.enrich(later)
    assert (later.cap_effective, later.pcmdline, later.exe) == (0x21, "sh -c run", "/bin/cat")


def test_imported_rule_on_events() -> None:
    rs = load_texts([("- rule: r\n  desc: d\n  condition: kind = process.exec and proc.user = nobody\n"
                      "  output: o\n  severity: low\n", "r.yaml")])
    assert rs.errors == []
    eng = Engine(rs)
    yes = Event(id="1", time=T0, kind="process.exec", pid=3, uid=65534, user="nobody")
    no = Event(id="2", time=T0, kind="process.exec", pid=5, uid=65534)
    assert [a.rule for a in eng.process_batch([yes, no])] == ["r"]


def test_output_placeholders_of_the_new_fields(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("- rule: R\n  desc: d\n  condition: evt.type = execve\n  output: u=%user.name "
                                     "l=%user.loginuid t=%proc.tty p=%proc.pcmdline c=%thread.cap_effective "
                                     "i=%container.image.repository s=%proc.sname\n  priority: WARNING\n")
    (rec,) = import_rules([tmp_path / "r.yaml"], "falco").rules
    assert rec.entry["output"] == ("u=%{proc.user} l=%{proc.loginuid} t=%{proc.tty} p=%{proc.pcmdline} "
                                   "c=%{proc.cap_effective_names} i=%{container.image_repository} s=n/a")


def test_kernel_module_rule_on_recorded_events() -> None:
    """Kernels built without module support report no init_module (the live pair is skipped there)."""
    stable = fixture_path("falco-rules") / "falco_rules.yaml"
    require_fixture(stable.parent)
    report = import_rules([stable], "falco")
    rs = load_texts([(report.to_yaml(), "stable.yaml")])
    ctr = Container(id="c1", runtime="runc")
    load = PrivInfo(op="init_module", result=-8)
    with_cap = Event(id="m1", time=T0, kind="priv.module_load", pid=7, container=ctr, priv=load,
                     cap_effective=0xA80425FB | 1 << 16)
    without = Event(id="m2", time=T0 + 1, kind="priv.module_load", pid=9, container=ctr, priv=load,
                    cap_effective=0xA80425FB)
    on_host = Event(id="m3", time=T0 + 2, kind="priv.module_load", pid=11, priv=load, cap_effective=1 << 16)
    fired = [(a.rule, a.evidence) for a in Engine(rs).process_batch([with_cap, without, on_host])]
    assert fired == [("falco.linux_kernel_module_injection_detected", ["m1"])]


def test_image_from_containers_storage(tmp_path: Path) -> None:
    cid = "af6014" + "0" * 58
    (tmp_path / "overlay-containers").mkdir()
    (tmp_path / "overlay-containers" / "containers.json").write_text(json.dumps([
        {"id": "1" * 64, "image": "e" * 64, "metadata": "{}"},
        {"id": cid, "image": "4985" + "f" * 60, "metadata": json.dumps({"image-name": "localhost/app:1"})}]))
    assert runtimes.storage_image(cid, str(tmp_path)) == ("localhost/app:1", "sha256:4985" + "f" * 60)
    assert runtimes.storage_image("2" * 64, str(tmp_path)) == (None, None)

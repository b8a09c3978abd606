"""Human rendering: exact strings for each kind, ancestry, and markup safety."""

from __future__ import annotations

import io
import time

from rich.console import Console

from runwatch.events import Container, Event, FileInfo, NetInfo, PrivInfo
from runwatch.outputs.text import TextOutput, event_summary, format_time, plain_line, render_events


def _console() -> Console:
    return Console(file=io.StringIO(), width=400, record=True, color_system=None)


def test_render_lines_exact(events: list[Event]) -> None:
    console = _console()
    assert render_events(events, console) == 23
    lines = console.export_text().splitlines()
    assert len(lines) == 23
    t = format_time(events[0].time)
    assert lines[0] == (
        f"{t} process.exec   host 3000 /usr/bin/tool0  tool0 --n 0  [tool shell]"
        "  <- /bin/sh <- /usr/bin/python3.11"
    )
    assert lines[1].endswith(
        "file.open      agent (runc) 3001 /usr/bin/tool1  /secrets/key1.pem (read)"
        "  <- /bin/sh <- /usr/bin/python3.11"
    )
    assert "model-server (runc) 3002 /usr/bin/tool2  tcp 10.1.2.3:4002 ok" in lines[2]
    assert "dns.query      host 3003 /usr/bin/tool3  host3.example.com A" in lines[3]
    assert "priv.setuid    agent (runc) 3004 /usr/bin/tool4  setresuid uid=0 euid=0" in lines[4]
    assert "process.exit   model-server (runc) 3000 /usr/bin/tool5  exit 5" in lines[5]
    assert [plain_line(e) for e in events] == lines  # the text without styles, for `runwatch events | ...`


def test_time_is_local_hh_mm_ss_mmm() -> None:
    t_ns = 1_760_000_000_987_654_321
    expected = time.strftime("%H:%M:%S", time.localtime(1_760_000_000)) + ".987"
    assert format_time(t_ns) == expected


def test_summaries_per_kind() -> None:
    def ev(kind: str, **kw: object) -> Event:
        return Event(id="x", time=1, kind=kind, pid=7, **kw)  # type: ignore[arg-type]

    assert event_summary(ev("process.fork", child_pid=4243)) == "child 4243"
    assert event_summary(ev("process.exit", exit_code=0, signal=9)) == "killed by SIGKILL"
    assert event_summary(ev("process.exit", exit_code=17)) == "exit 17"
    refused = NetInfo(proto="tcp", family="ipv6", dst_ip="::1", dst_port=8443, result=-111)
    assert event_summary(ev("net.connect", net=refused)) == "tcp [::1]:8443 ECONNREFUSED"
    acc = NetInfo(
        proto="tcp", family="ipv4", src_ip="192.0.2.9", src_port=51515, dst_ip="0.0.0.0", dst_port=80
    )
    assert event_summary(ev("net.accept", net=acc)) == "tcp 192.0.2.9:51515 -> 0.0.0.0:80"
    ren = FileInfo(path="/tmp/a", new_path="/tmp/b")
    assert event_summary(ev("file.rename", file=ren)) == "/tmp/a -> /tmp/b"
    mnt = PrivInfo(op="mount", source="/dev/sda1", target="/mnt", fstype="ext4")
    assert event_summary(ev("priv.mount", priv=mnt)) == "mount /dev/sda1 -> /mnt (ext4)"
    cap = PrivInfo(op="capset", cap_effective=0x200000, cap_permitted=0x200000)
    assert event_summary(ev("priv.capset", priv=cap)) == "capset eff=0x200000 prm=0x200000"
    pt = PrivInfo(op="ptrace", request=16, target_pid=31337, result=-1)
    assert event_summary(ev("priv.ptrace", priv=pt)) == "ptrace request=16 target=31337 EPERM"
    assert event_summary(ev("sensor.notice", attrs={"message": "lsm refused"})) == "lsm refused"


def test_markup_in_event_text_is_not_interpreted() -> None:
    box = Container(id="0123456789abcdef0123", runtime="runc")
    e = Event(
        id="x",
        time=1,
        kind="process.exec",
        pid=99,
        exe="/bin/[bold]x",
        cmdline="echo [red]hi[/red]",
        container=box,
    )
    console = _console()
    render_events([e], console)
    text = console.export_text()
    assert "/bin/[bold]x  echo [red]hi[/red]" in text
    assert "0123456789ab (runc) 99" in text  # short id when the container has no name


def test_text_output_writes_to_stream(events: list[Event]) -> None:
    stream = io.StringIO()
    out = TextOutput(stream)
    out.open()
    out.write(events[:3])
    out.reopen()
    out.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert "/secrets/key1.pem (read)" in lines[1]


def test_control_characters_from_the_workload_are_shown_escaped() -> None:
    forged = "\n12:00:00.000 CRITICAL fake_alert"
    e = Event(id="x", time=1, kind="process.exec", pid=77, exe="/tmp/\x1b[2Jx", cmdline=f"sh -c 'id'{forged}",
              container=Container(id="c" * 20, runtime="runc", name="box\u202eevil"),
              ancestry=["/bin/\rsh"])
    console = _console()
    render_events([e], console)
    text = console.export_text()
    assert text.count("\n") == 1  # one event, one line
    assert "/tmp/\\x1b[2Jx" in text and "\x1b" not in text
    assert "sh -c 'id'\\n12:00:00.000 CRITICAL fake_alert" in text
    assert "box\\u202eevil (runc)" in text and "<- /bin/\\rsh" in text

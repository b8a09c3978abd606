"""Live sensor: links, symlinks, chmod, mkdir/rmdir, raw and packet sockets, sockets on the
standard streams, module and BPF program loads, userfaultfd, io_uring setup, failed execs.

Each workload calls the syscalls by number (x86_64), so every program of a kind is exercised.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers are x86_64's")]

PRELUDE = textwrap.dedent("""
    import ctypes, os, socket, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    def sc(nr, *args):
        return libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    AT_FDCWD = -100
    d = sys.argv[1] if len(sys.argv) > 1 else "/"
""")


def run(capture, body: str, *args: str) -> tuple[int, list]:
    """Run PRELUDE + body in a child; its pid and the settled events it produced."""
    p = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(body), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return p.pid, [e for e in capture.settle() if e.pid == p.pid]


def of(events: list, kind: str) -> list:
    return [e for e in events if e.kind == kind]


def test_link_and_linkat_report_the_file_and_the_new_name(capture):
    with tempfile.TemporaryDirectory() as d:
        pid, events = run(capture, """
            f = os.path.join(d, "secret")
            open(f, "w").close()
            dfd = os.open(d, os.O_RDONLY)
            assert sc(86, f.encode(), os.path.join(d, "h1").encode()) == 0  # link
            assert sc(265, dfd, b"secret", dfd, b"h2", 0) == 0  # linkat, relative to dfd
            assert sc(265, AT_FDCWD, f.encode(), dfd, b"h3", 0) == 0
        """, d)
        links = of(events, "file.link")
    assert [(e.file.path, e.file.new_path) for e in links] == [
        (f"{d}/secret", f"{d}/h1"), (f"{d}/secret", f"{d}/h2"), (f"{d}/secret", f"{d}/h3")]
    assert {e.pid for e in links} == {pid}


def test_symlink_keeps_the_target_as_written(capture):
    with tempfile.TemporaryDirectory() as d:
        _, events = run(capture, """
            dfd = os.open(d, os.O_RDONLY)
            assert sc(88, b"/etc/shadow", os.path.join(d, "s1").encode()) == 0  # symlink
            assert sc(266, b"../x", dfd, b"s2") == 0  # symlinkat
            assert sc(266, b"/run/secrets/k", AT_FDCWD, os.path.join(d, "s3").encode()) == 0
        """, d)
        links = of(events, "file.symlink")
    assert [(e.file.path, e.file.new_path) for e in links] == [
        ("/etc/shadow", f"{d}/s1"), ("../x", f"{d}/s2"), ("/run/secrets/k", f"{d}/s3")]


def test_chmod_family_reports_mode_bits_and_flags_setuid_and_setgid(capture):
    with tempfile.TemporaryDirectory() as d:
        _, events = run(capture, """
            f = os.path.join(d, "tool")
            open(f, "w").close()
            dfd = os.open(d, os.O_RDONLY)
            fd = os.open(f, os.O_RDONLY)
            assert sc(90, f.encode(), 0o4755) == 0  # chmod
            assert sc(91, fd, 0o2750) == 0  # fchmod
            assert sc(268, dfd, b"tool", 0o644) == 0  # fchmodat
            r = sc(452, AT_FDCWD, f.encode(), 0o6711, 0)  # fchmodat2
            assert r == 0, ctypes.get_errno()
            assert sc(90, f.encode(), 0o600) == 0
        """, d)
        chmods = of(events, "file.chmod")
    f = f"{d}/tool"
    assert [(e.file.path, e.attrs["mode"], e.attrs["setuid"], e.attrs["setgid"]) for e in chmods] == [
        (f, "4755", True, False), (f, "2750", False, True), (f, "0644", False, False), (f, "6711", True, True),
        (f, "0600", False, False)]


def test_mkdir_and_rmdir(capture):
    with tempfile.TemporaryDirectory() as d:
        _, events = run(capture, """
            dfd = os.open(d, os.O_RDONLY)
            assert sc(83, os.path.join(d, "a").encode(), 0o755) == 0  # mkdir
            assert sc(258, dfd, b"b", 0o700) == 0  # mkdirat
            assert sc(258, AT_FDCWD, os.path.join(d, "c").encode(), 0o1777) == 0
            for n in "abc":
                assert sc(84, os.path.join(d, n).encode()) == 0  # rmdir
        """, d)
        mkdirs, rmdirs = of(events, "file.mkdir"), of(events, "file.rmdir")
    assert [(e.file.path, e.file.flags) for e in mkdirs] == [(f"{d}/a", 0o755), (f"{d}/b", 0o700),
                                                             (f"{d}/c", 0o1777)]
    assert [e.file.path for e in rmdirs] == [f"{d}/a", f"{d}/b", f"{d}/c"]


def test_raw_and_packet_sockets_are_reported_ordinary_ones_are_not(capture):
    _, events = run(capture, """
        keep = [socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)),
                socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
                socket.socket(socket.AF_INET, socket.SOCK_STREAM), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM),
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)]
        print(" ".join(str(s.fileno()) for s in keep[:3]))
    """)
    socks = of(events, "net.socket")
    assert [(e.net.family, e.attrs["sock_type"], e.net.proto) for e in socks] == [
        ("ipv4", "raw", "icmp"), ("packet", "raw", "0x0003"), ("ipv6", "raw", "icmpv6")]
    assert all(e.net.result == e.attrs["fd"] and e.attrs["fd"] > 2 for e in socks)


def test_a_socket_duplicated_onto_the_standard_streams(capture):
    _, events = run(capture, """
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
        port = srv.getsockname()[1]
        cli = socket.create_connection(("127.0.0.1", port))
        saved = [os.dup(0), os.dup(1), os.dup(2)]
        assert sc(33, cli.fileno(), 0) == 0  # dup2 onto stdin
        assert sc(292, cli.fileno(), 1, 0) == 1  # dup3 onto stdout
        assert sc(33, cli.fileno(), 2) == 2
        for i, fd in enumerate(saved):
            os.dup2(fd, i)  # a pipe or tty back: not a socket, not reported
        assert sc(33, cli.fileno(), 9) == 9  # above 2: not reported
        r, w = os.pipe()
        assert sc(33, r, 0) == 0  # a pipe onto stdin: not reported
        sys.stdout.write(f"{port} {cli.fileno()}")
    """)
    redirects = of(events, "net.redirect")
    sock = redirects[0].attrs["socket_fd"]
    port = redirects[0].net.dst_port
    assert [(e.attrs["fd"], e.attrs["socket_fd"], e.net.dst_ip, e.net.dst_port, e.net.proto) for e in redirects] == [
        (0, sock, "127.0.0.1", port, "tcp"), (1, sock, "127.0.0.1", port, "tcp"), (2, sock, "127.0.0.1", port, "tcp")]


def test_dup_of_a_socket_into_a_closed_standard_stream(capture):
    _, events = run(capture, """
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
        port = srv.getsockname()[1]
        cli = socket.create_connection(("127.0.0.1", port))
        saved = os.dup(1)
        os.close(1)
        assert sc(32, cli.fileno()) == 1  # dup: the lowest free descriptor, stdout
        os.close(1)
        r, w = os.pipe()
        os.close(0)
        assert sc(32, r) == 0  # a pipe onto stdin: not reported
        os.dup2(saved, 1)
        assert sc(32, cli.fileno()) > 2  # above 2: not reported
        sys.stdout.write(str(port))
    """)
    redirects = of(events, "net.redirect")
    port = redirects[0].net.dst_port
    assert [(e.attrs["fd"], e.attrs["socket_fd"], e.net.dst_ip, e.net.dst_port, e.net.proto) for e in redirects] == [
        (1, -1, "127.0.0.1", port, "tcp")]


def test_module_loads_are_reported_even_when_they_fail(capture):
    if "priv.module_load" not in capture.kernel.report.kinds_active():
        pytest.skip("this kernel has no init_module/finit_module (built without module support)")
    with tempfile.NamedTemporaryFile(suffix=".ko") as ko:
        ko.write(b"not an elf")
        ko.flush()
        _, events = run(capture, """
            junk = b"not an elf" * 4
            sc(175, junk, len(junk), b"rw_param=23")  # init_module
            sc(175, junk, 7, b"")
            fd = os.open(sys.argv[1], os.O_RDONLY)
            sc(313, fd, b"rw_opt=1", 0)  # finit_module
        """, ko.name)
    loads = [e for e in of(events, "priv.module_load")]
    assert [(e.priv.op, e.priv.target, e.attrs.get("params")) for e in loads] == [
        ("init_module", None, "rw_param=23"), ("init_module", None, ""), ("finit_module", ko.name, "rw_opt=1")]
    assert [e.attrs.get("size") for e in loads[:2]] == [40, 7]


def test_bpf_program_loads_carry_type_and_name(capture):
    _, events = run(capture, """
        insns = struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)  # r0 = 0; exit
        ibuf = ctypes.create_string_buffer(insns)
        lic = ctypes.create_string_buffer(b"GPL")
        for name in (b"rw_probe_a", b"rw_probe_b", b"rw_probe_c"):
            attr = ctypes.create_string_buffer(144)
            struct.pack_into("<IIQQ", attr, 0, 1, 2, ctypes.addressof(ibuf), ctypes.addressof(lic))
            attr[48:48 + len(name)] = name  # prog_name
            fd = sc(321, 5, attr, 144)  # BPF_PROG_LOAD, socket filter
            assert fd >= 0, ctypes.get_errno()
            os.close(fd)
        attr = ctypes.create_string_buffer(72)
        struct.pack_into("<IIII", attr, 0, 2, 4, 4, 1)  # BPF_MAP_CREATE: an array, not reported
        os.close(sc(321, 0, attr, 72))
    """)
    loads = of(events, "priv.bpf_load")
    assert [(e.priv.target, e.attrs["prog_type"], e.attrs["insn_cnt"]) for e in loads] == [
        ("rw_probe_a", 1, 2), ("rw_probe_b", 1, 2), ("rw_probe_c", 1, 2)]


def test_userfaultfd_and_io_uring_setup(capture):
    _, events = run(capture, """
        for flags in (0x80000, 0x800, 0):
            sc(323, flags)  # userfaultfd
        for entries, flags in ((4, 0), (8, 0x10), (16, 0)):
            params = ctypes.create_string_buffer(120)
            struct.pack_into("<III", params, 0, 0, 0, flags)
            fd = sc(425, entries, params)  # io_uring_setup
            if fd >= 0:
                os.close(fd)
    """)
    assert [e.attrs["flags"] for e in of(events, "priv.userfaultfd")] == [0x80000, 0x800, 0]
    assert [(e.attrs["entries"], e.attrs["setup_flags"]) for e in of(events, "priv.io_uring_setup")] == [
        (4, 0), (8, 0x10), (16, 0)]


def test_a_failed_exec_is_reported_with_its_errno_a_successful_one_is_not(capture):
    with tempfile.TemporaryDirectory() as d:
        _, events = run(capture, """
            f = os.path.join(d, "plain")
            open(f, "w").close()
            argv = (ctypes.c_char_p * 2)(b"x", None)
            env = (ctypes.c_char_p * 1)(None)
            assert sc(59, b"/nonexistent/rw-23", argv, env) == -1  # execve: ENOENT
            assert sc(59, f.encode(), argv, env) == -1  # not executable: EACCES
            dfd = os.open(d, os.O_RDONLY)
            assert sc(322, dfd, b"missing", argv, env, 0) == -1  # execveat: ENOENT
            os.execv("/usr/bin/true", ["true"])
        """, d)
        failed = of(events, "process.exec_failed")
        assert [(e.exec_name, e.attrs["errno"]) for e in failed] == [
            ("/nonexistent/rw-23", 2), (f"{d}/plain", 13), ("missing", 2)]
        assert [e.exe for e in of(events, "process.exec")][-1] == "/usr/bin/true"


def test_exec_carries_only_allow_listed_environment_variables(capture):
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": "/tmp/evil.so", "GLIBC_TUNABLES": "glibc.malloc.check=3",
           "HTTPS_PROXY": "http://10.9.9.9:3128", "API_TOKEN": "secret-23", "LONG": "x" * 700,
           "LD_LIBRARY_PATH": "/opt/lib"}
    procs = [subprocess.run(["/usr/bin/true"], env=env if i != 1 else {"PATH": "/usr/bin"}, check=True)
             for i in range(3)]
    assert len(procs) == 3
    execs = [e for e in capture.settle() if e.kind == "process.exec" and e.exe == "/usr/bin/true"]
    assert [(e.attrs or {}).get("env") for e in execs] == [
        {"LD_PRELOAD": "/tmp/evil.so", "GLIBC_TUNABLES": "glibc.malloc.check=3", "HTTPS_PROXY": "http://10.9.9.9:3128",
         "LD_LIBRARY_PATH": "/opt/lib"}, None,
        {"LD_PRELOAD": "/tmp/evil.so", "GLIBC_TUNABLES": "glibc.malloc.check=3", "HTTPS_PROXY": "http://10.9.9.9:3128",
         "LD_LIBRARY_PATH": "/opt/lib"}]
    assert not any(e.kind == "process.env" for e in capture.settle())

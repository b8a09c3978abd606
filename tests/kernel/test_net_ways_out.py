"""Live sensor: ways out to the network that connect() does not show.

Datagrams sent to an address given with the send (sendto, sendmsg, every message of
sendmmsg), TCP Fast Open, and every DNS question of one sendmmsg.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.kernel

PRELUDE = textwrap.dedent("""
    import ctypes, os, socket, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    def question(name, qid):
        q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
        return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", 1, 1)
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    class msghdr(ctypes.Structure):
        _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                    ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                    ("flags", ctypes.c_int)]
    class mmsghdr(ctypes.Structure):
        _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint32)]
    def sockaddr_in(ip, port):
        return ctypes.create_string_buffer(struct.pack("<H", 2) + struct.pack(">H", port) + socket.inet_aton(ip)
                                           + b"\\0" * 8, 16)
    def sendmmsg(sock, msgs):
        keep, vec = [], (mmsghdr * len(msgs))()
        for i, (addr, data) in enumerate(msgs):
            buf = ctypes.create_string_buffer(data, len(data))
            iov = iovec(ctypes.addressof(buf), len(data))
            keep += [buf, iov, addr]
            vec[i].hdr.name = ctypes.addressof(addr) if addr is not None else None
            vec[i].hdr.namelen = 16 if addr is not None else 0
            vec[i].hdr.iov, vec[i].hdr.iovlen = ctypes.addressof(iov), 1
        n = libc.sendmmsg(sock.fileno(), vec, len(msgs), 0)
        assert n == len(msgs), ctypes.get_errno()
""")


def run(capture, body: str) -> tuple[int, str, list]:
    p = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return p.pid, out, [e for e in capture.settle() if e.pid == p.pid]


def of(events: list, kind: str) -> list:
    return [e for e in events if e.kind == kind]


def test_unconnected_udp_sendto_reports_each_new_destination_once(capture):
    pid, _, events = run(capture, """
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for dst in (("127.0.0.1", 9), ("127.0.0.2", 7), ("127.0.0.1", 9), ("127.0.0.3", 19)):
            s.sendto(b"x", dst)
        s.sendto(b"again", ("127.0.0.2", 7))
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.sendto(b"y", ("::1", 9))
        s6.sendto(b"y", ("::1", 9))
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.connect(("127.0.0.1", 13))
        c.send(b"connected: net.connect, not net.send")
    """)
    sends = of(events, "net.send")
    assert [(e.net.dst_ip, e.net.dst_port, e.net.proto, e.net.result) for e in sends] == [
        ("127.0.0.1", 9, "udp", 0), ("127.0.0.2", 7, "udp", 0), ("127.0.0.3", 19, "udp", 0), ("::1", 9, "udp", 0)]
    assert {e.pid for e in sends} == {pid} and all(e.net.src_port for e in sends)
    assert [(e.net.dst_ip, e.net.dst_port) for e in of(events, "net.connect")] == [("127.0.0.1", 13)]


def test_sendmsg_with_an_address(capture):
    _, _, events = run(capture, """
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for dst in (("127.0.0.4", 5353), ("127.0.0.5", 123), ("127.0.0.6", 69)):
            s.sendmsg([b"m"], [], 0, dst)
    """)
    assert [(e.net.dst_ip, e.net.dst_port) for e in of(events, "net.send")] == [
        ("127.0.0.4", 5353), ("127.0.0.5", 123), ("127.0.0.6", 69)]


def test_every_message_of_sendmmsg(capture):
    _, _, events = run(capture, """
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sendmmsg(s, [(sockaddr_in("127.0.0.7", 1000 + i), b"m") for i in range(5)])
    """)
    assert [(e.net.dst_ip, e.net.dst_port) for e in of(events, "net.send")] == [
        ("127.0.0.7", 1000 + i) for i in range(5)]


def test_every_dns_question_of_one_sendmmsg(capture):
    _, _, events = run(capture, """
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.53.0.1", 53))  # someone listens: no port-unreachable cuts the batch short
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.53.0.1", 53))
        sendmmsg(s, [(None, question(n, i)) for i, n in enumerate(("a.example", "b.example", "c.example"))])
    """)
    assert [(e.dns.name, e.dns.server_ip, e.dns.server_port) for e in of(events, "dns.query")] == [
        ("a.example", "127.53.0.1", 53), ("b.example", "127.53.0.1", 53), ("c.example", "127.53.0.1", 53)]


def test_tcp_fast_open_is_a_connect(capture):
    _, out, events = run(capture, """
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
        port = srv.getsockname()[1]
        c = socket.socket()
        c.sendto(b"GET / HTTP/1.0\\r\\n\\r\\n", 0x20000000, ("127.0.0.1", port))  # MSG_FASTOPEN
        conn, _ = srv.accept()
        print(port)
    """)
    port = int(out)
    assert [(e.net.dst_ip, e.net.dst_port, e.net.proto, e.net.result) for e in of(events, "net.connect")] == [
        ("127.0.0.1", port, "tcp", 0)]
    assert of(events, "net.send") == []


RESOLVER = """
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.53.0.2", 53))  # a loopback address of its own: port 53 of 127.0.0.1 may be taken
    def answer(query, addrs):
        qid, qend = query[:2], 12 + query[12:].index(b"\\0") + 5
        out = qid + struct.pack(">HHHHH", 0x8180, 1, len(addrs), 0, 0) + query[12:qend]
        for a in addrs:
            out += struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(a)
        return out
"""


def test_dns_answers_name_the_connections_to_their_addresses(capture):
    pid, _, events = run(capture, textwrap.dedent(RESOLVER) + textwrap.dedent("""
        names = {"api.example": ["127.0.0.21", "127.0.0.22"], "db.example": ["127.0.0.23"]}
        for i, name in enumerate(("api.example", "db.example", "api.example")):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.connect(("127.53.0.2", 53))
            c.send(question(name, i))
            q, peer = server.recvfrom(512)
            server.sendto(answer(q, names[name]), peer)
            c.recv(512) if i != 1 else c.recvfrom(512)
        lone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # unconnected: sendto, recvmsg
        lone.sendto(question("mq.example", 7), ("127.53.0.2", 53))
        q, peer = server.recvfrom(512)
        server.sendto(answer(q, ["127.0.0.24"]), peer)
        lone.recvmsg(512)
        srv = socket.socket(); srv.bind(("127.0.0.21", 0)); srv.listen(8)
        port = srv.getsockname()[1]
        for ip in ("127.0.0.21", "127.0.0.23", "127.0.0.25"):
            try:
                socket.create_connection((ip, port), timeout=1).close()
            except OSError:
                pass
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"x", ("127.0.0.24", 9))
    """))
    answers = of(events, "dns.answer")
    assert [(e.dns.name, e.attrs["answers"], e.attrs["rcode"]) for e in answers] == [
        ("api.example", ["127.0.0.21", "127.0.0.22"], 0), ("db.example", ["127.0.0.23"], 0),
        ("api.example", ["127.0.0.21", "127.0.0.22"], 0), ("mq.example", ["127.0.0.24"], 0)]
    assert all(e.pid == pid for e in answers)
    conns = [(e.net.dst_ip, (e.attrs or {}).get("dest_name")) for e in of(events, "net.connect")
             if e.net.dst_port != 53]
    assert conns == [("127.0.0.21", "api.example"), ("127.0.0.23", "db.example"), ("127.0.0.25", None)]
    sends = [(e.net.dst_ip, (e.attrs or {}).get("dest_name")) for e in of(events, "net.send")
             if e.net.dst_port == 9]  # not the resolver's replies
    assert sends == [("127.0.0.24", "mq.example")]


def test_dns_questions_written_with_write_on_a_connected_udp_socket(capture):
    _, _, events = run(capture, """
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.53.0.4", 53))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.53.0.4", 53))
        for i, name in enumerate(("w1.example", "w2.example", "w3.example")):
            assert os.write(s.fileno(), question(name, i)) > 12
    """)
    assert [(e.dns.name, e.dns.server_port) for e in of(events, "dns.query")] == [
        ("w1.example", 53), ("w2.example", 53), ("w3.example", 53)]


def test_dns_over_tcp_questions_and_answers(capture):
    pid, _, events = run(capture, """
        import os, threading
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.53.0.3", 53)); srv.listen(4)
        def serve():
            for _ in range(3):
                conn, _ = srv.accept()
                n = struct.unpack(">H", conn.recv(2))[0]
                q = conn.recv(n)
                qend = 12 + q[12:].index(b"\\0") + 5
                a = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + q[12:qend]
                a += struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.3%d" % q[1])
                conn.sendall(struct.pack(">H", len(a)) + a)
                conn.close()
        t = threading.Thread(target=serve); t.start()
        for i, name in enumerate(("t0.example", "t1.example", "t2.example")):
            c = socket.create_connection(("127.53.0.3", 53))
            msg = question(name, i)
            framed = struct.pack(">H", len(msg)) + msg
            if i == 1:
                os.write(c.fileno(), framed)
            else:
                c.send(framed)
            # the whole answer (length, header and question echoed, one A record) is buffered
            # before the one read, so a loaded machine cannot split it over two reads
            import fcntl, termios, time
            want, avail = 2 + len(msg) + 16, ctypes.c_int(0)
            for _ in range(2000):
                fcntl.ioctl(c.fileno(), termios.FIONREAD, avail)
                if avail.value >= want:
                    break
                time.sleep(0.001)
            data = os.read(c.fileno(), 512) if i == 2 else c.recv(512)
            c.close()
        t.join()
        for ip in ("127.0.0.30", "127.0.0.32"):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b"x", (ip, 9))
    """)
    queries = [e for e in of(events, "dns.query") if e.pid == pid]
    assert [(e.dns.name, e.dns.server_ip, e.dns.server_port) for e in queries] == [
        ("t0.example", "127.53.0.3", 53), ("t1.example", "127.53.0.3", 53), ("t2.example", "127.53.0.3", 53)]
    answers = [(e.dns.name, e.attrs["answers"]) for e in of(events, "dns.answer")]
    assert answers == [("t0.example", ["127.0.0.30"]), ("t1.example", ["127.0.0.31"]),
                       ("t2.example", ["127.0.0.32"])]
    sends = [(e.net.dst_ip, (e.attrs or {}).get("dest_name")) for e in of(events, "net.send")]
    assert sends == [("127.0.0.30", "t0.example"), ("127.0.0.32", "t2.example")]



def test_a_reused_fd_of_a_dns_socket_reads_no_answer(capture):
    """A DNS socket's fd, once closed, is taken by a pipe, a TCP connection to another port
    and a UDP socket that never asked: what is read on them is no DNS answer."""
    pid, _, events = run(capture, """
        import os
        srv = socket.socket(); srv.bind(("127.53.0.5", 53)); srv.listen(4)
        other = socket.socket(); other.bind(("127.53.0.5", 8053)); other.listen(4)
        payload = question("not-an-answer.example", 7)
        # 1: a TCP DNS socket's fd becomes a pipe's read end
        c = socket.create_connection(("127.53.0.5", 53)); fd = c.fileno(); c.detach(); os.close(fd)
        r, w = os.pipe()
        assert r == fd, (r, fd)
        os.write(w, payload); assert len(os.read(r, 512)) == len(payload)
        os.close(r); os.close(w)
        # 2: a UDP socket that asked by sendto; its fd becomes a TCP connection to port 8053
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(question("asked.example", 8), ("127.53.0.5", 53)); fd = u.fileno(); u.detach(); os.close(fd)
        t = socket.create_connection(("127.53.0.5", 8053))
        assert t.fileno() == fd, (t.fileno(), fd)
        conn, _ = other.accept(); conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += t.recv(512)
        t.close(); conn.close()
        # 3: a UDP socket connected to port 53; its fd becomes one that never asked
        v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.connect(("127.53.0.5", 53))
        fd = v.fileno(); v.detach(); os.close(fd)
        x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); x.bind(("127.53.0.5", 0))
        assert x.fileno() == fd, (x.fileno(), fd)
        y = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); y.sendto(payload, x.getsockname())
        assert len(x.recvfrom(512)[0]) == len(payload)
    """)
    assert [(e.dns.name, e.attrs) for e in of(events, "dns.answer")] == []
    assert [e.dns.name for e in of(events, "dns.query") if e.pid == pid] == ["asked.example"]

URING_CONNECT = """
    from runwatch.testing.uring import Ring
    ring = Ring()
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
    port = srv.getsockname()[1]
    keep = []
    for i in range(3):
        c = socket.socket()
        keep.append(c)
        res = ring.connect(c.fileno(), struct.pack("<H", 2) + struct.pack(">H", port)
                           + socket.inet_aton("127.0.0.1") + b"\\0" * 8)
        assert res == 0, res
    print(port, " ".join(str(c.getsockname()[1]) for c in keep))
"""


def test_io_uring_connect_is_a_connect(capture):
    _, out, events = run(capture, URING_CONNECT)
    port, *locals_ = map(int, out.split())
    conns = of(events, "net.connect")
    assert [(e.net.dst_ip, e.net.dst_port, e.net.proto) for e in conns] == [("127.0.0.1", port, "tcp")] * 3
    assert len(locals_) == 3 and len(set(locals_)) == 3

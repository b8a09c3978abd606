"""Python helpers that live tests run inside containers, appended to their script preludes.

The text needs ``ctypes``, ``os``, ``socket`` and ``time`` imported and ``libc`` bound to
``ctypes.CDLL(None, use_errno=True)`` by the prelude it follows.
"""

import textwrap

PROBES = textwrap.dedent("""
    def tcp_try(ip, port):
        # a non-blocking TCP connect that need not succeed
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((ip, port))
        s.close()

    def ptrace_child(requests):
        # attach to a sleeping child (PTRACE_ATTACH), then make each request against it
        child = os.fork()
        if child == 0:
            time.sleep(5)
            os._exit(0)
        libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        if libc.ptrace(16, child, None, None) == 0:
            os.waitpid(child, 0)
            for req in requests:
                libc.ptrace(req, child, ctypes.c_void_p(0x1000), ctypes.c_void_p(0x41))
        os.kill(child, 9)
        os.waitpid(child, 0)
""")

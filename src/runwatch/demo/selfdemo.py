"""The self-demonstration workload: one runc container doing a few telling things.

Run as ``python -m runwatch.demo.selfdemo --port P`` (the ``runwatch demo`` command runs it
under the sensor). Inside a container named ``demo-agent`` with a mounted secret it:
spawns a shell that runs two tools, reads the mounted secret, resolves a name through the
local stub resolver, and connects to a listener on 127.0.0.1:P. Exit code 0 on success.
"""

from __future__ import annotations

import argparse
import sys

from runwatch.containers.runc import RuncContainer

CONTAINER_NAME = "demo-agent"
SECRET_NAME = "api-token"
LOOKUP_NAME = "collector.exfil.example"

_SCRIPT = f"""
import hashlib, socket, subprocess, sys
port = int(sys.argv[1])
# 1. a shell, spawned the way a prompt-injected tool would
subprocess.run(["/bin/sh", "-c", "/usr/bin/id -u; /usr/bin/uname -s"], check=True)
# 2. the mounted secret (only its digest is printed here; runwatch stores neither)
token = open("/run/secrets/{SECRET_NAME}", "rb").read()
print("token sha256:", hashlib.sha256(token).hexdigest()[:12])
# 3. a name lookup through the stub resolver on 127.0.0.1:53
try:
    socket.getaddrinfo("{LOOKUP_NAME}", 443)
except socket.gaierror:
    pass
# 4. an outbound connection carrying a digest of the token
with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
    s.sendall(hashlib.sha256(token).hexdigest().encode())
print("demo workload done")
"""


def main(argv: list[str] | None = None) -> int:
    """Run the container once; returns its exit code."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True, help="listener on 127.0.0.1 to connect to")
    args = ap.parse_args(argv)
    container = RuncContainer(name=CONTAINER_NAME, secrets={SECRET_NAME: b"demo-token-0123456789"})
    try:
        res = container.run(["python3", "-c", _SCRIPT, str(args.port)], timeout=60)
    finally:
        container.close()
    sys.stdout.write(res.stdout.decode(errors="replace"))
    sys.stderr.write(res.stderr.decode(errors="replace"))
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())

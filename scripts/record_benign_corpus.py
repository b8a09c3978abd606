"""Record the benign corpus: ordinary host work and AI-workload containers under the real sensor.

Run as root from the checkout (after ``scripts/install.sh``)::

    .venv/bin/python scripts/record_benign_corpus.py [OUT]

OUT defaults to ``tests/precision/fixtures/benign_corpus.jsonl.gz``. What it runs stands for
about an hour of ordinary activity, compressed in time (each loop is one "minute"):

- on the host: a virtual environment and an offline ``pip install``, ``pip list``/``show``,
  git sessions (init, commits, branches, diff, log, stash), a C build with make and gcc,
  Python tooling that shells out (pipelines, find, grep, tar), ldd, host inventory commands
  (id, uname, ps, df, ss, ip), DNS look-ups in mixed case, chmod/ln/touch, a user's own
  start-up file, history and known_hosts;
- in containers (runc, busybox rootfs with the host's Python): a model server (role
  ``model-server``) that reads its token at start, starts multiprocessing workers, serves
  requests and runs ``uname -p`` and ``ldconfig -p`` through the standard library, probed
  through ``runc exec`` every "minute" (a shell with wget, and python); an SDK agent (role
  ``agent``) that reads its token, loads a pinned plugin and calls approved tools; a batch
  job with shell pipelines (no role); ``pip --version``/``pip list`` and ``compileall``.

The events are the enriched ones (container, role, ancestry, the runtime mark), as gzip JSONL.
"""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from runwatch.containers.oci import Bind
from runwatch.containers.rootfs import build_rootfs
from runwatch.containers.runc import RuncContainer
from runwatch.enrich.roles import ROLE_LABEL
from runwatch.events import to_json
from runwatch.sensors.kernel import watchlist
from runwatch.testing.capture import LiveCapture, require_kernel_sensor
from runwatch.testing.workloads import accepting_listener, tiny_wheel

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "precision" / "fixtures" / "benign_corpus.jsonl.gz"
MINUTES = 60  # loops of the per-"minute" activities (health probes, agent turns)
SDK_DIR_IN_CONTAINER = "/run/runwatch-sdk"

MODEL_SERVER = textwrap.dedent("""
    import ctypes.util, http.server, multiprocessing, os, platform, threading, time, urllib.request
    token = open("/run/secrets/token").read()          # the server's own token, at start
    platform.processor()                                # runs uname -p
    ctypes.util.find_library("c")                       # runs ldconfig -p
    def warm(n):
        return sum(i * i for i in range(n))
    if __name__ == "__main__":
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(2) as pool:                       # the server's workers
            assert pool.map(warm, [1000, 2000]) == [warm(1000), warm(2000)]
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"ok" if self.path == "/health" else b'{"text": "hello"}'
                self.send_response(200); self.end_headers(); self.wfile.write(body)
            def log_message(self, *a):
                pass
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        open("/tmp/port", "w").write(str(srv.server_address[1]))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        for _ in range(20):
            urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/v1/generate").read()
        with open("/tmp/server.log", "a") as log:
            while not os.path.exists("/tmp/stop"):
                log.write("served\\n"); log.flush()
                time.sleep(0.2)
        srv.shutdown()
""")

AGENT = textwrap.dedent("""
    import os, socket, time
    from runwatch import sdk
    PORT = int(os.environ["PORT"])
    token = open("/run/secrets/token").read()          # the agent's own token, at start
    sdk.announce("helpdesk")
    sdk.plugin_load("kb-search", "/opt/plugins/kb_search.py", sha256="cd" * 32)
    for i in range(MINUTES):
        with sdk.prompt_route("operator"):
            sdk.model_call("openai", "gpt-4o-mini")
            with sdk.tool_call("web_search", call_id=f"s{i}", agent="helpdesk"):
                socket.create_connection(("127.0.0.1", PORT)).close()
            with sdk.tool_call("calculator", call_id=f"c{i}", agent="helpdesk"):
                sum(range(1000))
            with sdk.tool_call("read_file", call_id=f"r{i}", agent="helpdesk"):
                open("/etc/hostname").read()
    sdk.flush(2.0)
    time.sleep(0.5)
""").replace("MINUTES", str(MINUTES))

BATCH = textwrap.dedent("""
    for i in 1 2 3 4 5 6; do
      date > /tmp/stamp; ls / | wc -l > /dev/null; cat /etc/hostname > /dev/null
      find /etc -maxdepth 1 -name '*.conf' > /dev/null; tar czf /tmp/etc.tgz /etc 2>/dev/null
      mkdir -p /tmp/job/$i && echo done > /tmp/job/$i/out && rm -rf /tmp/job/$i
    done
""")

ROTATING_LOGGER = textwrap.dedent("""
    import ctypes.util, logging, logging.handlers, os, subprocess
    os.makedirs("/var/log/app", exist_ok=True)
    log = logging.getLogger("app")
    log.addHandler(logging.handlers.RotatingFileHandler("/var/log/app/app.log", maxBytes=200, backupCount=3))
    for i in range(60):
        log.error("request %d served in %d ms", i, 12 + i)
    subprocess.run(["git", "--version"], capture_output=True)
    ctypes.util.find_library("ssl")
""")

HOST_SCRIPT = textwrap.dedent("""
    set -e
    cd "$WORK"
    export HOME="$WORK/home" GIT_CONFIG_NOSYSTEM=1
    mkdir -p "$HOME/.ssh"
    "$PY" -m venv --system-site-packages venv
    venv/bin/python -m pip install --no-index --no-build-isolation --no-deps -q "$WHEEL"
    venv/bin/python -m pip list > /dev/null; venv/bin/python -m pip show tinypkg > /dev/null
    venv/bin/python -m pip --version > /dev/null
    for s in 1 2 3 4 5 6; do
      git init -q "repo$s" && cd "repo$s"
      git config user.email dev@example.com && git config user.name dev
      for c in 1 2 3; do echo "line $c" >> a.txt; git add a.txt; git commit -q -m "change $c"; done
      git checkout -q -b feature; echo x >> a.txt; git diff > /dev/null; git stash -q; git stash pop -q
      git commit -qam feature; git checkout -q -; git merge -q --no-edit feature; git log --oneline | wc -l > /dev/null
      git status --short > /dev/null; cd ..
    done
    printf 'int main(void) { return 0; }\\n' > main.c
    printf 'app: main.c\\n\\tgcc -O2 -o app main.c\\nclean:\\n\\trm -rf app build\\n' > Makefile
    for b in 1 2 3; do make -s clean; make -s; ./app; done
    for t in 1 2 3 4 5 6; do venv/bin/python tool.py; done
    ldd /usr/bin/true > /dev/null
    id > /dev/null; uname -a > /dev/null; ps aux > /dev/null; df -h > /dev/null
    ss -tln > /dev/null 2>&1 || true; ip addr > /dev/null 2>&1 || true; hostname > /dev/null; whoami > /dev/null
    chmod +x tool.py; chmod 644 main.c; mkdir -p shared; chmod 2775 shared; ln -sf main.c link.c; ln main.c hard.c
    touch -r main.c hard.c; touch -d '2020-01-01' stamp
    echo 'export EDITOR=vi' >> "$HOME/.bashrc"; echo 'ls' >> "$HOME/.bash_history"
    echo 'db ssh-ed25519 AAAA' >> "$HOME/.ssh/known_hosts"
    tar czf src.tgz main.c Makefile; mkdir -p out; tar xzf src.tgz -C out; rm -rf out src.tgz
    find . -name '*.c' > /dev/null; grep -rn TODO . > /dev/null || true
    crontab -l > /dev/null 2>&1 || true
    ssh-keygen -q -t ed25519 -N '' -f "$HOME/.ssh/id_ed25519"; ssh-keygen -l -f "$HOME/.ssh/id_ed25519.pub" > /dev/null
    openssl rand -hex 16 > /dev/null; openssl dgst -sha256 main.c > /dev/null; gpg --version > /dev/null
    cp /usr/bin/true ./server; setcap cap_net_bind_service=+ep ./server 2>/dev/null || true; ./server
    "$PY" -c 'import logging, logging.handlers as h; l = logging.getLogger("a")
    l.addHandler(h.RotatingFileHandler("app.log", maxBytes=64, backupCount=2)); [l.error("x" * 40) for _ in range(8)]'
    rm -rf repo1 build
""")

TOOL = textwrap.dedent("""
    import socket, subprocess
    out = subprocess.run(["sh", "-c", "ls | wc -l"], capture_output=True, text=True, check=True)
    subprocess.run(["git", "--version"], capture_output=True, check=True)
    subprocess.run(["sh", "-c", "date +%s > /dev/null && echo ok | tr a-z A-Z > /dev/null"], check=True)
    for name in ("PyPI.org", "files.PythonHosted.org", "github.com."):
        try:
            socket.getaddrinfo(name, 443)
        except OSError:
            pass
""")


def _host(work: Path) -> None:
    wheel = tiny_wheel(work)
    (work / "tool.py").write_text(TOOL)
    env = {**os.environ, "WORK": str(work), "PY": sys.executable, "WHEEL": str(wheel)}
    subprocess.run(["/bin/bash", "-c", HOST_SCRIPT], env=env, check=True, timeout=600)


def _containers(work: Path, live: LiveCapture, port: int) -> None:
    rootfs = build_rootfs()
    sock_dir = work / "sdk"
    env = {"PORT": str(port), "RUNWATCH_SOCKET": f"{SDK_DIR_IN_CONTAINER}/sdk.sock"}
    secrets = {"token": b"eyJhbGciOi-not-a-real-token-23"}
    binds = [Bind(sock_dir, SDK_DIR_IN_CONTAINER, False)]

    def box(name: str, role: str | None) -> RuncContainer:
        ann = {ROLE_LABEL: role} if role else {}
        return RuncContainer(rootfs, name=name, env=env, binds=binds, annotations=ann, secrets=secrets)

    with box("model-server", "model-server") as server:
        # The server runs from a file (multiprocessing's spawn re-imports the main module by path).
        boot = ("import base64, runpy; open('/tmp/server.py', 'wb').write(base64.b64decode("
                f"{base64.b64encode(MODEL_SERVER.encode())!r})); runpy.run_path('/tmp/server.py', run_name='__main__')")
        server.start(["python3", "-c", boot])
        deadline = time.monotonic() + 60
        while server.exec(["/bin/cat", "/tmp/port"]).returncode != 0:
            if time.monotonic() > deadline or not server.running:
                raise SystemExit("the model server did not start")
            time.sleep(0.5)
        for minute in range(MINUTES):  # the orchestrator's probes, one a "minute"
            if minute % 3 == 0:
                probe = ["python3", "-c", "import urllib.request; urllib.request.urlopen("
                         "'http://127.0.0.1:' + open('/tmp/port').read() + '/health').read()"]
            else:
                probe = ["/bin/sh", "-c", "wget -q -O /dev/null http://127.0.0.1:$(cat /tmp/port)/health"]
            res = server.exec(probe, timeout=30)
            if res.returncode != 0:
                raise SystemExit(f"health probe failed: {res.stderr.decode()[-300:]}")
        server.exec(["/bin/sh", "-c", "touch /tmp/stop"])
        time.sleep(0.5)
    live.fresh_join()
    with box("agent", "agent") as agent:
        res = agent.run(["python3", "-c", AGENT], timeout=120)
        if res.returncode != 0:
            raise SystemExit(f"agent failed: {res.stderr.decode()[-300:]}")
    live.fresh_join()
    with box("batch", None) as batch:
        res = batch.run(["/bin/sh", "-c", BATCH], timeout=120)
        if res.returncode != 0:
            raise SystemExit(f"batch failed: {res.stderr.decode()[-300:]}")
    with RuncContainer(rootfs, name="logger", env=env, binds=[*binds, Bind(work / "varlog", "/var/log", False)],
                       annotations={ROLE_LABEL: "model-server"}, secrets=secrets) as logger:
        # An application writing and rotating its own logs below /var/log.
        res = logger.run(["python3", "-c", ROTATING_LOGGER], timeout=120)
        if res.returncode != 0:
            raise SystemExit(f"logger failed: {res.stderr.decode()[-300:]}")
    with box("tooling", "model-server") as tooling:
        res = tooling.run(["/bin/sh", "-c", "pip --version > /dev/null; pip list > /dev/null 2>&1; "
                           "mkdir -p /tmp/app && echo 'x = 1' > /tmp/app/m.py && python3 -m compileall -q /tmp/app"],
                          timeout=120)
        if res.returncode != 0:
            raise SystemExit(f"tooling failed: {res.stderr.decode()[-300:]}")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    require_kernel_sensor()
    work = Path(tempfile.mkdtemp(prefix="rw-corpus-"))
    srv, _ = accepting_listener()
    (work / "sdk").mkdir()
    os.chmod(work / "sdk", 0o755)
    (work / "host").mkdir()
    (work / "varlog").mkdir()
    live = LiveCapture(sdk_socket=work / "sdk" / "sdk.sock", hold_ms=200.0, watches=watchlist.default_watches(),
                       quiet=0.5, limit=30.0).start()
    try:
        _host(work / "host")
        _containers(work, live, srv.getsockname()[1])
        events = live.settle()
    finally:
        live.stop()
        srv.close()
        shutil.rmtree(work, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(b"".join(to_json(e) + b"\n" for e in events), mtime=0))
    print(f"{len(events)} events, {out.stat().st_size} bytes -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

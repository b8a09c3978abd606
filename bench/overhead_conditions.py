"""The conditions a workload is measured under: bare, no-op BPF floor, runwatch, auditd.

Each condition has ``session(workload)``, a context manager that sets the condition up for
one workload run and tears it down completely on exit (also on error or Ctrl-C). It yields
a dict the condition fills with its own figures (events, drops, ...) when the session ends.
Agents (runwatch, auditd) are pinned to CPU 0; the workload runs on CPU 1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runwatch.bpf.libbpf import LibbpfError
from runwatch.bpf.object import BpfObject
from runwatch.sensors.kernel import loader
from runwatch.sensors.kernel.layout import WatchFlag
from runwatch.sensors.kernel.watchlist import default_watches

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "bench" / "build"
AGENT_CPU = "0"
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Workload:
    """One workload: its binary and arguments, and the no-op programs for its hooks."""

    name: str
    argv: tuple[str, ...]  # after the binary; "{n}" -> op count, "{path}" -> the unwatched file
    noop_programs: tuple[str, ...]
    binary: str

    def command(self, n: int, path: str) -> list[str]:
        """The command line (pinned to CPU 1) for ``n`` ops on the unwatched file ``path``."""
        args = (a.format(n=n, path=path) for a in self.argv)
        return ["taskset", "-c", "1", str(BUILD / self.binary), *args]


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=check)


class Bare:
    """Nothing attached: the baseline."""

    name = "bare"

    @contextmanager
    def session(self, workload: Workload) -> Iterator[dict[str, Any]]:
        """No set-up; yields an empty dict."""
        yield {}


class Noop:
    """Empty BPF programs on the workload's hooks (bench/noop.bpf.c): the floor."""

    name = "noop"

    @contextmanager
    def session(self, workload: Workload) -> Iterator[dict[str, Any]]:
        """Load and attach only ``workload.noop_programs``; detach and free on exit."""
        problem = loader.ensure_tracefs()
        if problem:
            raise RuntimeError(problem)
        obj = BpfObject(BUILD / "noop.bpf.o")
        try:
            obj.set_autoload(set(workload.noop_programs))
            try:
                obj.load()
            except LibbpfError as exc:
                raise LibbpfError(exc.errno, f"loading the no-op programs failed: {exc.strerror}") from exc
            for name in workload.noop_programs:
                try:
                    obj.attach(name)
                except LibbpfError as exc:
                    raise LibbpfError(exc.errno, f"attaching no-op program {name} failed: {exc.strerror}") from exc
            yield {"programs": list(workload.noop_programs)}
        finally:
            obj.close()


def _bpf_links(pid: int) -> int:
    """How many BPF links process ``pid`` holds open (0 if it is gone)."""
    count = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link":
                    count += 1
            except OSError:
                continue
    except OSError:
        return 0
    return count


def runwatch_cli() -> list[str] | None:
    """``runwatch watch`` (forced onto the kernel source) if the CLI has ``--stats-json``."""
    exe = REPO / ".venv" / "bin" / "runwatch"
    if not exe.exists():
        return None
    try:
        res = _run([str(exe), "watch", "--help"], check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0 or "--stats-json" not in res.stdout:
        return None
    return [str(exe), "watch", *(["--source", "kernel"] if "--source" in res.stdout else [])]


class Runwatch:
    """The real sensor, host-wide, draining into SQLite.

    Uses ``runwatch watch --db PATH --stats-json FILE`` when the CLI has it, else the
    Python-API stand-in ``bench/drain.py agent`` with the same arguments and output.
    """

    name = "runwatch"

    def __init__(self) -> None:
        cli = runwatch_cli()
        if cli is not None:
            self.agent_cmd = cli
            self.agent = " ".join(["runwatch", *cli[1:]]) + " (CLI)"
        else:
            python = str(REPO / ".venv" / "bin" / "python")
            self.agent_cmd = [python, str(REPO / "bench" / "drain.py"), "agent"]
            self.agent = "bench/drain.py agent (Python API: KernelSource + SqliteStore)"

    @contextmanager
    def session(self, workload: Workload) -> Iterator[dict[str, Any]]:
        """Start the agent on CPU 0, wait until its programs are attached, stop it with SIGINT.

        Yields a dict that gets ``events``, ``drops`` (stats JSON), ``stored`` (rows in the
        database) and ``stored_in_window`` (rows whose time lies in the windows the caller
        appends to ``windows`` as (start_ns, end_ns)).
        """
        tmp = Path(tempfile.mkdtemp(prefix="rw-bench-runwatch-"))
        db, stats_file = tmp / "events.db", tmp / "stats.json"
        cmd = ["taskset", "-c", AGENT_CPU, *self.agent_cmd, "--db", str(db), "--stats-json", str(stats_file)]
        errlog = (tmp / "stderr").open("w")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errlog)
        out: dict[str, Any] = {"windows": []}
        try:
            self._wait_ready(proc, tmp / "stderr")
            yield out
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=120)
            if rc != 0:
                raise RuntimeError(f"runwatch agent exited {rc}: {_tail(tmp / 'stderr')}")
            stats = json.loads(stats_file.read_text())
            out["events"] = int(stats["events"])
            out["drops"] = int(stats["drops"])
            out.update(_count_rows(db, out["windows"]))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            errlog.close()
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _wait_ready(proc: subprocess.Popen[bytes], errpath: Path) -> None:
        """Ready = the agent holds BPF links and their number has been stable for 0.5 s."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"runwatch agent exited {proc.returncode} at start: {_tail(errpath)}")
            n = _bpf_links(proc.pid)
            if n != last:
                last, stable_since = n, time.monotonic()
            elif n > 0 and time.monotonic() - stable_since >= 0.5:
                return
            time.sleep(0.05)
        raise RuntimeError(f"runwatch agent did not attach within {READY_TIMEOUT_S:.0f}s: {_tail(errpath)}")


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except OSError:
        return "(no output)"
    return lines[-1] if lines else "(no output)"


def _count_rows(db: Path, windows: list[tuple[int, int]]) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        in_window = sum(
            conn.execute("SELECT count(*) FROM events WHERE time BETWEEN ? AND ?", w).fetchone()[0]
            for w in windows
        )
    finally:
        conn.close()
    return {"stored": int(stored), "stored_in_window": int(in_window)}


def audit_rules() -> tuple[list[list[str]], list[str]]:
    """auditctl rule arguments equivalent to the sensor's hooks, and the watches skipped.

    execve/execveat; each existing watched path (a ``/``-prefix as a recursive directory
    watch, a plain prefix as every existing name extending it) with ``-p rw`` or ``-p w``
    as the sensor's flags say; connect. Paths that do not exist cannot be watched by audit
    and are skipped (they could not be opened during the benchmark either).
    """
    rules = [["-a", "always,exit", "-F", "arch=b64", "-S", "execve,execveat", "-k", "rwb_exec"]]
    skipped: list[str] = []
    for w in default_watches():
        perm = ("r" if w.flags & WatchFlag.READ else "") + ("w" if w.flags & WatchFlag.WRITE else "")
        if w.prefix.endswith("/"):
            paths = [w.prefix] if os.path.isdir(w.prefix) else []
        else:
            parent, stem = os.path.split(w.prefix)
            try:
                paths = sorted(os.path.join(parent, f) for f in os.listdir(parent) if f.startswith(stem))
            except OSError:
                paths = []
        if not paths:
            skipped.append(w.prefix)
        rules.extend(["-w", p, "-p", perm, "-k", "rwb_file"] for p in paths)
    rules.append(["-a", "always,exit", "-F", "arch=b64", "-S", "connect", "-k", "rwb_net"])
    return rules, skipped


def audit_status() -> dict[str, int]:
    """``auditctl -s`` as a dict of ints (enabled, pid, lost, backlog_limit, ...)."""
    out: dict[str, int] = {}
    for line in _run(["auditctl", "-s"]).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


class Auditd:
    """auditd 3.0.9 started by hand with :func:`audit_rules`, logging to a temp file.

    Refuses to run (``unavailable`` says why) if auditd is already running or audit rules
    are already loaded, so it never disturbs an existing set-up. On exit: rules deleted,
    auditd stopped, and the kernel audit settings it changed restored.
    """

    name = "auditd"

    def __init__(self) -> None:
        self.unavailable: str | None = None
        if not Path("/sbin/auditd").exists() or shutil.which("auditctl") is None:
            self.unavailable = "auditd/auditctl not installed"
        elif audit_status().get("pid", 0) != 0:
            self.unavailable = "an audit daemon is already running"
        elif _run(["auditctl", "-l"]).stdout.strip() not in ("", "No rules"):
            self.unavailable = "audit rules are already loaded"
        self.rules, self.skipped = audit_rules()

    @contextmanager
    def session(self, workload: Workload) -> Iterator[dict[str, Any]]:
        """Start auditd on CPU 0 with the rules.

        Yields a dict that gets ``log_lines`` (lines auditd wrote) and ``lost`` (kernel count).
        """
        if self.unavailable:
            raise RuntimeError(f"auditd condition unavailable: {self.unavailable}")
        before = audit_status()
        tmp = Path(tempfile.mkdtemp(prefix="rw-bench-auditd-"))
        log = tmp / "audit.log"
        (tmp / "plugins.d").mkdir()
        conf = tmp / "auditd.conf"
        conf.write_text(
            f"log_file = {log}\nlog_format = ENRICHED\nflush = INCREMENTAL_ASYNC\nfreq = 50\n"
            f"max_log_file = 1024\nmax_log_file_action = IGNORE\nspace_left = 75\n"
            f"space_left_action = IGNORE\nadmin_space_left = 50\nadmin_space_left_action = IGNORE\n"
            f"disk_full_action = IGNORE\ndisk_error_action = IGNORE\nplugin_dir = {tmp}/plugins.d\n"
            f"q_depth = 2000\noverflow_action = IGNORE\npriority_boost = 4\nlocal_events = yes\n"
            f"write_logs = yes\nend_of_event_timeout = 2\n"
        )
        conf.chmod(0o640)
        errlog = (tmp / "stderr").open("w")
        proc = subprocess.Popen(["taskset", "-c", AGENT_CPU, "/sbin/auditd", "-n", "-c", str(tmp)],
                                stdout=subprocess.DEVNULL, stderr=errlog)
        out: dict[str, Any] = {"rules": len(self.rules)}
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while audit_status().get("pid") != proc.pid:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"auditd did not start: {_tail(tmp / 'stderr')}")
                time.sleep(0.05)
            # Debian's stock buffers (/etc/audit/rules.d/audit.rules), then the rule set.
            _run(["auditctl", "-b", "8192", "--backlog_wait_time", "60000"])
            for rule in self.rules:
                _run(["auditctl", *rule])
            lost0 = audit_status().get("lost", 0)
            yield out
            out["lost"] = audit_status().get("lost", 0) - lost0
        finally:
            _run(["auditctl", "-D"], check=False)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            errlog.close()
            _restore_audit(before)
            try:
                out["log_lines"] = sum(1 for _ in log.open("rb"))
            except OSError:
                out["log_lines"] = 0
            shutil.rmtree(tmp, ignore_errors=True)


def _restore_audit(before: dict[str, int]) -> None:
    """Put back the kernel audit settings auditd or the rule set may have changed."""
    for flag, key in (("-b", "backlog_limit"), ("--backlog_wait_time", "backlog_wait_time"),
                      ("-f", "failure"), ("-e", "enabled")):
        if key in before:
            _run(["auditctl", flag, str(before[key])], check=False)

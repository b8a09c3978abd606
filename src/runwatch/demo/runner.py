"""Run demo scenarios under one sensor session and collect what is needed to report them.

:func:`run_demo` starts the peers (mock service, plugin backend, DNS responder and, when
an exfil scenario is chosen, the "external" host's network namespaces), then one
:class:`~runwatch.session.Session` (kernel sensor following what it spawns, the agent-SDK
collector on a socket in a temporary directory that the containers bind-mount, the rule
pack), then drives each scenario in turn as a watched child process. Everything is torn
down in reverse order whatever happens; :attr:`DemoRun.leftovers` lists anything that
survived (it should always be empty).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runwatch.demo.peers import DnsResponder, ExternalHost, HttpService, demo_links_left, demo_netns_left
from runwatch.demo.scenarios import SCENARIOS, DriveConfig, DriveResult, Scenario, unpin_all, write_workspace
from runwatch.session import Session, SessionOptions

PLUGIN_HOST = "api.weather-plugin.example"
AGENTDOJO_FILE = "agentdojo_ground_truth.json"
AGENTDOJO_ENV = "RUNWATCH_AGENTDOJO"
SCENARIO_TIMEOUT_S = 90.0

Progress = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot run as asked; the message is one line."""


@dataclass
class ScenarioRun:
    """One scenario's run: its wall-clock window (epoch ns) and the driver's result."""

    scenario: Scenario
    start_ns: int
    end_ns: int
    result: DriveResult


@dataclass
class DemoRun:
    """Everything :func:`run_demo` did, for the report."""

    db: str
    runs: list[ScenarioRun] = field(default_factory=list)
    rules: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    peers: dict[str, Any] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)
    work: str = ""  # the run's scratch directory (sockets, workspace, pid namespace pins), removed at the end


def find_agentdojo(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The AgentDojo ground-truth file: ``explicit`` (file or directory), ``$RUNWATCH_AGENTDOJO``,
    or ``shared/fixtures/agentdojo`` beside or above the checkout; None if none exists."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    elif os.environ.get(AGENTDOJO_ENV):
        candidates.append(Path(os.environ[AGENTDOJO_ENV]))
    else:
        here = Path(__file__).resolve()
        candidates += [p / "shared" / "fixtures" / "agentdojo" for p in here.parents]
    for c in candidates:
        f = c / AGENTDOJO_FILE if c.is_dir() else c
        if f.is_file():
            return f
    if explicit is not None:
        raise DemoError(f"no AgentDojo ground truth at {explicit} (expected {AGENTDOJO_FILE})")
    return None


def check_agentdojo(path: Path) -> None:
    """Raise DemoError unless ``path`` holds AgentDojo suites with tools and tasks."""
    try:
        data = json.loads(path.read_text())
        suites = data["suites"]
        for name, suite in suites.items():
            if not isinstance(suite["tools"], list) or not isinstance(suite["user_tasks"], list):
                raise TypeError(f"suite {name} lacks tool and task lists")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DemoError(f"{path} is not an AgentDojo ground-truth file: {exc}") from None


def resolve_names(names: Sequence[str]) -> list[Scenario]:
    """Scenarios in the order given (all of them when ``names`` is empty); unknown names raise."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise DemoError(f"unknown scenario {unknown[0]!r} (choose from {', '.join(SCENARIOS)})")
    chosen = list(dict.fromkeys(names)) or list(SCENARIOS)
    return [SCENARIOS[n] for n in chosen]


DEMO_APPROVED_TOOLS: tuple[str, ...] = ("http_get", "http_post", "read_file", "python_eval")
"""The demo agents' declared tools. Not run_shell, load_plugin or a plugin's tools: those
are capabilities nobody reviewed, which is what ``unapproved_tool_executed`` is for."""


def write_approved_tools(path: Path, fixture: Path | None) -> Path:
    """An operator's rule file extending the pack's ``approved_tools`` list with the demo
    agents' declared tools (and every AgentDojo suite's tools when the fixture is used)."""
    tools = list(DEMO_APPROVED_TOOLS)
    if fixture is not None:
        for suite in json.loads(fixture.read_text())["suites"].values():
            tools += [str(t) for t in suite["tools"] if str(t) not in tools]
    path.write_text("# The demo agents' declared tools, appended to the rule pack's approved list.\n"
                    "- list: approved_tools\n  append: true\n  items: " + json.dumps(tools) + "\n"
                    "# The demo's \"external\" host lives in 10.23.0.0/24 (a private range on this machine).\n"
                    "- list: external_networks\n  append: true\n  items: [10.23.0.0/24]\n")
    return path


def _start_session(opts: SessionOptions, notices: list[str], extra_rules: tuple[str, ...]) -> Session:
    """Start the session with the pack plus ``extra_rules``; if they do not load, the pack
    alone; if that does not load either, no rules (each fallback is a notice)."""
    from runwatch.rules import RuleLoadError

    pack = opts.rules
    attempts = [pack + extra_rules, pack, ()] if pack else [()]
    for n, rules in enumerate(attempts):
        opts.rules = rules
        try:
            return Session(opts).start(["runwatch", "demo"])
        except RuleLoadError as exc:
            if n == len(attempts) - 1:
                raise
            notices.append(f"rules not loaded ({exc}); retrying with "
                           + ("the pack alone" if attempts[n + 1] else "no detection"))
    raise AssertionError("unreachable")


def run_demo(names: Sequence[str], db: str, *, rules: tuple[str, ...] = (), limit: int | None = None,
             agentdojo: str | os.PathLike[str] | None = None, keep_dir: str | None = None,
             progress: Progress | None = None, lake: str | None = None) -> DemoRun:
    """Run the named scenarios (all when empty) under one session storing to ``db`` (replaced).

    ``rules``: rule files to detect with (empty: none). ``limit``: AgentDojo tasks per suite
    and kind. ``keep_dir``: copy each container's config and logs there. ``lake``: also write
    every event and alert to the OCSF lake at that directory. Raises DemoError
    (or the sensor's NoSourceError/StoreError) when nothing can run.
    """
    say = progress or (lambda _line: None)
    scenarios = resolve_names(names)
    if os.geteuid() != 0:
        raise DemoError("the demo needs root (eBPF sensor, runc containers, network namespaces)")
    fixture: Path | None = None
    if any(s.name == "agentdojo" for s in scenarios):
        fixture = find_agentdojo(agentdojo)
        if fixture is None:
            if names:
                raise DemoError(f"AgentDojo fixture not found: pass --agentdojo PATH or set ${AGENTDOJO_ENV}")
            scenarios = [s for s in scenarios if s.name != "agentdojo"]
        else:
            check_agentdojo(fixture)
    for suffix in ("", "-wal", "-shm"):
        Path(db + suffix).unlink(missing_ok=True)
    run = DemoRun(db=db)
    if fixture is None and any(s.name == "agentdojo" for s in SCENARIOS.values()) and not names:
        run.notices.append("AgentDojo fixture not found: the agentdojo scenario is skipped")
    tmp = Path(tempfile.mkdtemp(prefix="rwdemo-"))
    run.work = str(tmp)
    tmp.chmod(0o755)
    sock_dir = tmp / "sock"
    sock_dir.mkdir(mode=0o755)
    workspace = tmp / "workspace"
    write_workspace(workspace)
    pins = tmp / "pidns"
    pins.mkdir()
    closers: list[Callable[[], None]] = []
    try:
        service = HttpService().start()
        closers.append(service.close)
        plugin = HttpService().start()
        closers.append(plugin.close)
        dns = DnsResponder({PLUGIN_HOST: "127.0.0.1"}).start()
        closers.append(dns.close)
        if not dns.available:
            run.notices.append("127.0.0.1:53 is taken: the plugin's name lookup will not be answered")
        ext: ExternalHost | None = None
        if any(s.external for s in scenarios):
            say("creating the external host: network namespaces and a veth pair (10.23.0.1 <-> 10.23.0.2)")
            ext = ExternalHost()
            closers.append(ext.close)
            ext.start()
        opts = SessionOptions(db=db, track_self=True, ring_bytes=1 << 24, sdk_socket=str(sock_dir / "sdk.sock"),
                              rules=rules, live_alerts=False, lake=lake)
        extra = (str(write_approved_tools(tmp / "demo-approved-tools.yaml", fixture)),) if rules else ()
        session = _start_session(opts, run.notices, extra)
        run.rules = opts.rules
        run.notices.extend(session.notices)
        try:
            for i, sc in enumerate(scenarios, 1):
                say(f"[{i}/{len(scenarios)}] {sc.name}: {sc.title}")
                cfg = DriveConfig(scenario=sc.name, sock_dir=str(sock_dir), workspace=str(workspace),
                                  service_url=service.url, plugin_port=plugin.port,
                                  agent_netns=ext.agent_netns if ext else None, sink_url=ext.sink_url if ext else None,
                                  fixture=str(fixture) if fixture else None, limit=limit, keep_dir=keep_dir,
                                  pin_dir=str(pins))
                run.runs.append(_drive(session, cfg, sc))
                r = run.runs[-1]
                took = (r.end_ns - r.start_ns) / 1e9
                say(f"      {len(r.result.containers)} container(s), rc {r.result.rc}, {took:.1f}s"
                    + (f": {r.result.error}" if r.result.error else ""))
        finally:
            say("draining the sensor and flushing the store")
            run.summary = session.close()
        run.peers = {"service_port": service.port, "service_requests": service.requests,
                     "plugin_port": plugin.port, "plugin_requests": plugin.requests, "dns_queries": dns.queries}
        if ext is not None and ext.sink is not None:
            run.peers["sink_bytes"] = ext.sink.body_bytes
            run.peers["sink_requests"] = ext.sink.requests
    finally:
        for close in reversed(closers):
            close()
        stuck = unpin_all(pins)
        shutil.rmtree(tmp, ignore_errors=True)
    run.leftovers = leftovers(run) + [f"pid namespace pin {p}" for p in stuck]
    return run


def _drive(session: Session, cfg: DriveConfig, sc: Scenario) -> ScenarioRun:
    """Spawn the driver for one scenario under the session and wait for its JSON result."""
    start = time.time_ns()
    child = session.spawn([sys.executable, "-m", "runwatch.demo.scenarios", json.dumps(asdict(cfg))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = child.communicate(timeout=SCENARIO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
    end = time.time_ns()
    result = DriveResult(sc.name, rc=child.returncode if child.returncode is not None else 1)
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        loaded = json.loads(lines[-1])
        result = DriveResult(scenario=sc.name, rc=int(loaded["rc"]),
                             containers=[(str(i), str(n)) for i, n in loaded["containers"]],
                             details=dict(loaded["details"]), error=loaded.get("error"))
    except (IndexError, ValueError, KeyError, TypeError):
        tail = " ".join(err.decode(errors="replace").split())[-300:]
        result.error = f"driver gave no result (rc {child.returncode}): {tail}"
    return ScenarioRun(sc, start, end, result)


def leftovers(run: DemoRun) -> list[str]:
    """Anything of this demo still on the machine: containers, cgroups, namespaces, veths."""
    from runwatch.containers.runc import CGROUP_PARENT, RUNC_STATE_ROOT
    from runwatch.host import cgroup_v2

    me = os.getpid()
    left = [f"netns {n}" for n in demo_netns_left(me)] + [f"link {n}" for n in demo_links_left(me)]
    for r in run.runs:
        for cid, name in r.result.containers:
            if (RUNC_STATE_ROOT / cid).exists():
                left.append(f"runc container {cid} ({name})")
            if cgroup_v2().dir_of(f"/{CGROUP_PARENT}/{cid}").exists():
                left.append(f"cgroup of {cid} ({name})")
    return left

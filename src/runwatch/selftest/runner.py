"""A self-test run: its own short sensor session (as ``runwatch run`` starts one: no store, no rules,
kept to the containers in scope), the canaries in every container at once, then a bounded wait
for their events and the report.

Thread safety: the collector is written by the pipeline thread and read by the caller under its
lock; each container's canaries run in their own worker thread, in canary order.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from runwatch.events import Event
from runwatch.selftest import canaries as cn
from runwatch.selftest.report import (
    MISSED,
    NOT_COVERED,
    NOT_RUN,
    SEEN,
    CanaryResult,
    ContainerResult,
    Report,
    Scope,
    verdict,
)
from runwatch.selftest.targets import Target
from runwatch.session import Session, SessionOptions

PROC_KINDS = frozenset({"process.exec"})
"""Of the canaries' kinds, what the proc fallback sees."""


@dataclass
class SelftestOptions:
    """How to run a self-test."""

    timeout: float = 10.0  # seconds to wait for the canaries' events after the last one ran
    source: str = "auto"  # auto | kernel | proc, as for runwatch run
    drop_containers: tuple[str, ...] = ()  # the session's filter drops these containers' events
    exec_timeout: float = 30.0  # seconds one canary's exec may take
    notice: Callable[[str], None] | None = None


class _Collector:
    """An event output keeping the events of the containers in scope, with their arrival time."""

    name = "selftest"

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = frozenset(ids)
        self._lock = threading.Lock()
        self._events: list[tuple[int, Event]] = []  # (time.monotonic_ns() at arrival, event)

    def open(self) -> None:
        """Nothing to open."""

    def write(self, events: Sequence[Event]) -> None:
        now = time.monotonic_ns()
        kept = [(now, e) for e in events if e.container is not None and e.container.id in self.ids]
        if kept:
            with self._lock:
                self._events.extend(kept)

    def flush(self) -> None:
        """Nothing buffered."""

    def close(self) -> None:
        """Nothing to close."""

    def snapshot(self) -> list[tuple[int, Event]]:
        with self._lock:
            return list(self._events)


@dataclass
class _Ran:
    """What was triggered in one container: each canary's start time, or why it did not run."""

    target: Target
    token: cn.Token
    started: dict[str, int] = field(default_factory=dict)  # canary -> monotonic ns before its exec
    not_run: dict[str, str] = field(default_factory=dict)  # canary -> reason


def _exec(target: Target, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(target.exec_argv(argv), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _trigger(target: Target, token: cn.Token, covered: frozenset[str], timeout: float) -> _Ran:
    """Run the canaries in ``target`` (those of kinds the host covers), then clean up."""
    ran = _Ran(target, token)
    try:
        setup = _exec(target, cn.setup_argv(token), timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        setup = subprocess.CompletedProcess([], 1, "", str(exc))
    try:
        for canary in cn.CANARIES:
            if canary.kind not in covered:
                continue
            if canary.name == "file" and setup.returncode != 0:
                ran.not_run[canary.name] = f"the canary file could not be written: {_why(setup)}"
                continue
            start = time.monotonic_ns()
            try:
                res = _exec(target, canary.argv(token), timeout)
            except (OSError, subprocess.SubprocessError) as exc:
                ran.not_run[canary.name] = f"exec failed: {exc}"
                continue
            if res.returncode == cn.NOT_RUN and canary.name in ("connect", "dns"):
                ran.not_run[canary.name] = "the container has no tool for it"
            elif res.returncode != 0 and canary.name in ("exec", "file"):
                ran.not_run[canary.name] = f"exec failed: {_why(res)}"
            else:
                ran.started[canary.name] = start
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _exec(target, cn.cleanup_argv(token, "made" in setup.stdout), timeout)
    return ran


def _why(res: subprocess.CompletedProcess[str]) -> str:
    text = (res.stderr or res.stdout or "").strip().splitlines()
    return f"exit {res.returncode}" + (f": {text[-1]}" if text else "")


def _tokens(n: int) -> list[cn.Token]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(20000 + secrets.randbelow(40000))
    return [cn.Token(secrets.token_hex(6), port) for port in sorted(ports)]


def _found(ran: _Ran, events: list[tuple[int, Event]]) -> dict[str, int]:
    """canary -> delay in ms, for each started canary whose event arrived."""
    out: dict[str, int] = {}
    by_name = {c.name: c for c in cn.CANARIES}
    cid = ran.target.id
    for name, start in ran.started.items():
        canary = by_name[name]
        for arrived, e in events:
            if (arrived >= start and e.kind == canary.kind and e.container is not None and e.container.id == cid
                    and canary.seen(e, ran.token)):
                out[name] = (arrived - start) // 1_000_000
                break
    return out


def run_selftest(targets: Sequence[Target], opts: SelftestOptions | None = None) -> Report:
    """Start a session watching ``targets``, run the canaries in each, and report."""
    o = opts if opts is not None else SelftestOptions()
    collector = _Collector([t.id for t in targets])
    session = Session(SessionOptions(db=None, source=o.source, containers=tuple(t.id for t in targets),
                                     drop_containers=o.drop_containers, sdk_socket=None, rules=(),
                                     live_alerts=False, extra_sinks=[collector], notice=o.notice))
    try:
        session.start(["selftest"])
        scope = _scope(session)
        covered = frozenset(c.kind for c in cn.CANARIES) - set(scope.kinds_not_seen)
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(targets)))) as pool:
            runs = list(pool.map(lambda tt: _trigger(tt[0], tt[1], covered, o.exec_timeout),
                                 zip(targets, _tokens(len(targets)), strict=True)))
        deadline = time.monotonic() + o.timeout
        while True:
            events = collector.snapshot()
            found = [_found(r, events) for r in runs]
            if all(len(f) == len(r.started) for f, r in zip(found, runs, strict=True)) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        session.close()
    results = [_result(r, f, scope) for r, f in zip(runs, found, strict=True)]
    blind = [r.target.label for r, c in zip(runs, results, strict=True) if c.result != "ok"]
    return Report(scope=scope, containers=results, blind=blind)


def _scope(session: Session) -> Scope:
    sources = session.sources
    assert sources is not None
    name = sources.system.chosen.name if sources.system.chosen is not None else None
    report = sources.report
    kinds_lost = getattr(report, "kinds_lost", None)
    if name == "kernel" and callable(kinds_lost):
        lost = sorted(kinds_lost())
    else:
        lost = sorted(c.kind for c in cn.CANARIES if c.kind not in PROC_KINDS)
    return Scope(source=name, hooks_active=len(sources.active), hooks_refused=sources.refused,
                 kinds_not_seen=lost, notices=list(sources.notices))


def _result(ran: _Ran, found: dict[str, int], scope: Scope) -> ContainerResult:
    c = ran.target.container
    results: dict[str, CanaryResult] = {}
    for canary in cn.CANARIES:
        n = canary.name
        if canary.kind in scope.kinds_not_seen:
            results[n] = CanaryResult(kind=canary.kind, status=NOT_COVERED)
        elif n in ran.not_run:
            results[n] = CanaryResult(kind=canary.kind, status=NOT_RUN, detail=ran.not_run[n])
        elif n in found:
            results[n] = CanaryResult(kind=canary.kind, status=SEEN, delay_ms=found[n])
        else:
            results[n] = CanaryResult(kind=canary.kind, status=MISSED)
    return ContainerResult(id=c.id, name=c.name, pod=c.pod, runtime=c.runtime, privileged=c.privileged,
                           devices=list(c.devices or ()), gpu=c.gpu, canaries=results, result=verdict(results))

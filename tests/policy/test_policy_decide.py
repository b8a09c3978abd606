"""Decisions: precedence, default deny, monitor mode, challenges, decision events into the store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from runwatch.events import AiInfo, Container, Event
from runwatch.pipeline import Pipeline
from runwatch.policy import Workload, load_policy_texts
from runwatch.policy.challenges import Challenge, ChallengeBook, ChallengeError
from runwatch.policy.decide import Decider
from runwatch.policy.source import DecisionBus, DecisionSource, decision_event
from runwatch.store.sqlite import SqliteStore, query_events

POLICIES = """\
- id: strict
  selector: {container: "strict-*"}
  mode: enforce
  fail: closed
  challenge_timeout: 300ms
  tools:
    allow: [search, send_email, run_shell]
    challenge: [send_email, run_shell]
    deny: [run_shell]
- id: open-fail
  selector: {container: "lenient"}
  mode: enforce
  fail: open
  challenge_timeout: 200ms
  tools: {challenge: [deploy]}
- id: watch-only
  selector: {container: "watched"}
  mode: monitor
  tools: {allow: [search], challenge: [deploy]}
"""

STRICT = Workload(container=Container(id="a" * 64, runtime="runc", name="strict-23"), pid=4242, exe="/usr/bin/python3",
                  agent="planner")
LENIENT = Workload(container=Container(id="b" * 64, runtime="runc", name="lenient"), pid=77)
WATCHED = Workload(container=Container(id="c" * 64, runtime="runc", name="watched"), pid=99)


def _decider() -> tuple[Decider, list[Event]]:
    events: list[Event] = []
    return Decider(load_policy_texts([(POLICIES, "p.yaml")]), emit=events.append), events


def test_precedence_deny_then_challenge_then_allow_and_default_deny() -> None:
    d, events = _decider()
    got = {t: d.decide(STRICT, t) for t in ("run_shell", "send_email", "search", "http_get")}
    assert {t: (x.verdict, x.rule) for t, x in got.items()} == {
        "run_shell": ("deny", "tools.deny:run_shell"),
        "send_email": ("challenge", "tools.challenge:send_email"),
        "search": ("allow", "tools.allow:search"),
        "http_get": ("deny", "tools.default"),
    }
    assert got["send_email"].challenge_id is not None and got["send_email"].timeout_s == 0.3
    # No allow list: unlisted tools are allowed.
    assert d.decide(LENIENT, "anything").rule == "tools.unlisted"
    assert [e.decision.verdict for e in events if e.decision] == ["deny", "challenge", "allow", "deny", "allow"]


def test_monitor_mode_allows_and_records_would_deny() -> None:
    d, events = _decider()
    deny = d.decide(WATCHED, "run_shell", "digest-23")
    chal = d.decide(WATCHED, "deploy")
    assert (deny.verdict, deny.recorded, deny.rule) == ("allow", "would_deny", "tools.default")
    assert (chal.verdict, chal.recorded, chal.challenge_id) == ("allow", "would_challenge", None)
    assert not d.challenges.pending()
    infos = [e.decision for e in events]
    assert [(i.verdict, i.mode, i.policy) for i in infos if i] == [("would_deny", "monitor", "watch-only"),
                                                                   ("would_challenge", "monitor", "watch-only")]
    assert events[0].ai == AiInfo(args_digest="digest-23")
    # The same policies forced to enforce deny instead.
    enforced = Decider(load_policy_texts([(POLICIES, "p.yaml")]).with_mode("enforce"), emit=lambda e: None)
    assert enforced.decide(WATCHED, "run_shell").verdict == "deny"


def test_decision_events_carry_workload_policy_rule_and_latency() -> None:
    d, events = _decider()
    d.decide(STRICT, "run_shell", call_id="call-23")
    (e,) = events
    assert e.kind == "policy.decision" and e.source == "policy"
    assert (e.pid, e.exe, e.container) == (4242, "/usr/bin/python3", STRICT.container)
    assert e.tool_call is not None and (e.tool_call.name, e.tool_call.call_id, e.tool_call.agent) == (
        "run_shell", "call-23", "planner")
    info = e.decision
    assert info is not None
    assert (info.policy, info.verdict, info.rule, info.target, info.layer, info.mode) == (
        "strict", "deny", "tools.deny:run_shell", "run_shell", "tool", "enforce")
    assert info.latency_ns is not None and info.latency_ns > 0
    assert info.reason == "tool 'run_shell' is denied (tools.deny:run_shell)"


def test_no_policy_allows_without_recording() -> None:
    d, events = _decider()
    x = d.decide(Workload(exe="/usr/bin/true"), "run_shell")
    assert (x.verdict, x.policy, x.rule) == ("allow", None, "no_policy") and events == []


def test_challenge_approved_rejected_and_timed_out() -> None:
    d, events = _decider()
    first = d.decide(STRICT, "send_email")
    assert first.challenge_id is not None
    threading.Timer(0.05, d.challenges.approve, args=(first.challenge_id,), kwargs={"note": "alice"}).start()
    final = d.await_challenge(first.challenge_id)
    assert (final.verdict, final.recorded, final.reason) == ("allow", "approve", "approved; note 'alice'")

    second = d.decide(STRICT, "send_email")
    assert second.challenge_id is not None
    d.challenges.reject(second.challenge_id)
    assert d.await_challenge(second.challenge_id).verdict == "deny"
    try:
        d.challenges.approve(second.challenge_id)
    except ChallengeError as exc:
        assert str(exc) == f"challenge {second.challenge_id} was already resolved: reject"
    else:
        raise AssertionError("approving a rejected challenge must fail")

    closed = d.decide(STRICT, "send_email")
    opened = d.decide(LENIENT, "deploy")
    assert closed.challenge_id and opened.challenge_id
    t0 = time.monotonic()
    c, o = d.await_challenge(closed.challenge_id), d.await_challenge(opened.challenge_id)
    assert (c.verdict, c.recorded, o.verdict, o.recorded) == ("deny", "timeout", "allow", "timeout")
    assert time.monotonic() - t0 >= 0.25
    verdicts = [e.decision.verdict for e in events if e.decision]
    assert verdicts == ["challenge", "approve", "challenge", "reject", "challenge", "challenge", "timeout",
                        "timeout"]
    approve = events[1].decision
    assert approve is not None and approve.challenge_id == first.challenge_id and approve.latency_ns
    assert approve.latency_ns >= 40_000_000


def test_unanswered_challenge_times_out_through_the_source() -> None:
    bus = DecisionBus()
    book = ChallengeBook()
    d = Decider(load_policy_texts([(POLICIES, "p.yaml")]), book, emit=bus.put)
    src = DecisionSource(bus, book)
    src.start()
    ch = d.decide(LENIENT, "deploy")
    time.sleep(0.25)
    batch = src.poll(0.0)
    assert batch is not None
    assert [e.decision.verdict for e in batch if e.decision] == ["challenge", "timeout"]
    assert book.get(ch.challenge_id or "").state == "timeout"  # type: ignore[union-attr]


def test_bus_drops_are_counted() -> None:
    bus = DecisionBus(capacity=23)
    for i in range(29):
        bus.put(decision_event(policy="p", verdict="allow", rule=None, reason=None, latency_ns=i, mode="enforce",
                               target="t", layer="tool"))
    assert bus.stats() == {"recorded": 23, "drops": 6, "queued": 23}
    assert [e.decision.latency_ns for e in bus.drain() if e.decision] == list(range(23))


def test_decision_events_are_stored_through_the_pipeline(tmp_path: Path) -> None:
    bus = DecisionBus()
    d = Decider(load_policy_texts([(POLICIES, "p.yaml")]), emit=bus.put)
    src = DecisionSource(bus)
    db = tmp_path / "events.db"
    store = SqliteStore(str(db))
    pipe = Pipeline(src, [], [store])
    src.start()
    for i in range(23):
        d.decide(STRICT, "search" if i % 2 else "run_shell", call_id=f"c{i}")
    pipe.drain(quiet_rounds=2, max_s=2.0)
    pipe.close()
    stored = query_events(db, kinds=["policy.decision"])
    assert len(stored) == 23
    assert [e.decision.verdict for e in stored if e.decision].count("deny") == 12
    assert {e.container.name for e in stored if e.container} == {"strict-23"}
    assert all(e.decision is not None and e.decision.latency_ns for e in stored)
    assert sorted(e.tool_call.call_id or "" for e in stored if e.tool_call) == sorted(f"c{i}" for i in range(23))


def test_an_answer_is_recorded_before_the_waiting_caller_is_released() -> None:
    recorded: list[str] = []

    def slow_record(ch: Challenge) -> None:
        time.sleep(0.3)  # a slow store: the caller must not run ahead of its decision event
        recorded.append(ch.state)

    book = ChallengeBook(on_resolve=slow_record)
    ch = book.open(policy_id="p", rule="tools.challenge:x", tool="x", workload=Workload(), timeout_ns=23 * 10**9,
                   mode="enforce", fail="closed")
    seen: list[list[str]] = []
    waiter = threading.Thread(target=lambda: (book.wait(ch.id), seen.append(list(recorded))))
    waiter.start()
    time.sleep(0.05)
    book.reject(ch.id)
    waiter.join(5)
    assert seen == [["reject"]]

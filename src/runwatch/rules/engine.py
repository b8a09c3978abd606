"""The detection engine: per-kind rule index, engine state, sequences, alerts.

``Engine.process(event)`` evaluates only the rules whose kind constraint admits the
event's kind (the index is built lazily, once per kind seen), then feeds the sequences
indexed the same way, and returns the alerts raised (not throttled: see
``runwatch.alerts.Throttle``).

Engine state, all bounded with counted eviction: first-seen destinations per workload
(``net.dst.first_seen``), the pid -> tree-root map (``proc.tree``), and sequence partials.
State is only kept when an enabled rule reads it.

Thread safety: none. One engine is driven by one thread; rule sets are immutable and may
be shared between engines.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from runwatch.alerts.model import Alert, alert_from_event
from runwatch.events import Event
from runwatch.rules.fields import EvalCtx
from runwatch.rules.model import Rule, RuleMeta, RuleSet
from runwatch.rules.sequences import SequenceMatcher

_NOT_ROOTS = frozenset({0, 1, 2})  # never a tree root: no parent, init, kthreadd
_SWEEP_EVERY = 4096


class Engine:
    """Evaluates a rule set against events. Disabled rules are not evaluated.

    ``max_first_seen``: destinations remembered for ``net.dst.first_seen``;
    ``max_tree``: pids remembered for ``proc.tree``; ``sequence_max_keys``: keys per sequence.
    ``include``: rule/sequence ids evaluated even when disabled (the rule-test runner uses it).
    """

    def __init__(self, ruleset: RuleSet, *, max_first_seen: int = 65_536, max_tree: int = 65_536,
                 sequence_max_keys: int = 10_000, include: Iterable[str] = ()) -> None:
        also = set(include)
        self.ruleset = ruleset
        self.rules: list[Rule] = [r for r in ruleset.rules if r.meta.enabled or r.name in also]
        self.matchers = [SequenceMatcher(s, sequence_max_keys) for s in ruleset.sequences
                         if s.meta.enabled or s.name in also]
        needs: set[str] = set()
        for r in self.rules:
            needs |= r.needs
        for m in self.matchers:
            needs |= m.seq.needs
        self._want_first_seen = "first_seen" in needs
        self._want_tree = "tree" in needs
        self._ctx = EvalCtx()
        self._index: dict[str, tuple[tuple[Rule, ...], tuple[SequenceMatcher, ...]]] = {}
        self._kind_events: dict[str, int] = {}
        self._seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._roots: OrderedDict[int, int] = OrderedDict()
        self.max_first_seen = max_first_seen
        self.max_tree = max_tree
        self.events = 0
        self.alerts = 0
        self.first_seen_evicted = 0
        self.tree_evicted = 0
        self._alerts_by_rule: dict[str, int] = {}

    # -- index ----------------------------------------------------------------------------
    def _build(self, kind: str) -> tuple[tuple[Rule, ...], tuple[SequenceMatcher, ...]]:
        rules = tuple(r for r in self.rules if r.kinds is None or r.kinds(kind))
        seqs = tuple(m for m in self.matchers if any(k is None or k(kind) for k in m.seq.step_kinds))
        entry = (rules, seqs)
        if len(self._index) < 4096:  # kinds are a small closed set; guard against junk input
            self._index[kind] = entry
        return entry

    def candidates(self, kind: str) -> tuple[str, ...]:
        """Ids of the rules and sequences evaluated for events of ``kind`` (for tests and tooling)."""
        rules, seqs = self._index.get(kind) or self._build(kind)
        return tuple(r.name for r in rules) + tuple(m.seq.name for m in seqs)

    # -- state ----------------------------------------------------------------------------
    def _first_seen(self, e: Event) -> bool | None:
        n = e.net
        if e.kind != "net.connect" or n is None or not n.dst_ip:
            return None
        c = e.container
        key = (c.id if c is not None else e.exe, n.dst_ip, n.dst_port or 0)
        seen = self._seen
        if key in seen:
            seen.move_to_end(key)
            return False
        if len(seen) >= self.max_first_seen:
            seen.popitem(last=False)
            self.first_seen_evicted += 1
        seen[key] = None
        return True

    def _tree(self, e: Event) -> int:
        roots = self._roots
        pid = e.pid
        root = roots.get(pid)
        if root is None:
            ppid = e.ppid
            if ppid in _NOT_ROOTS:
                root = pid
            else:
                root = roots.get(ppid)
                if root is None:
                    root = ppid
                    self._remember(ppid, ppid)
            self._remember(pid, root)
        if e.kind == "process.fork" and e.child_pid:
            self._remember(e.child_pid, root)
        return root

    def _remember(self, pid: int, root: int) -> None:
        roots = self._roots
        if pid in roots:
            roots.move_to_end(pid)
        elif len(roots) >= self.max_tree:
            roots.popitem(last=False)
            self.tree_evicted += 1
        roots[pid] = root

    # -- evaluation -----------------------------------------------------------------------
    def _alert(self, meta: RuleMeta, e: Event, evidence: tuple[str, ...] | None = None,
               first: int | None = None) -> Alert:
        self.alerts += 1
        self._alerts_by_rule[meta.name] = self._alerts_by_rule.get(meta.name, 0) + 1
        return alert_from_event(
            e, rule=meta.name, severity=meta.severity, output=meta.output.render(e, self._ctx),
            attack=meta.attack, mappings=meta.mappings, rule_action=meta.action,
            evidence=evidence, first_time=first, tags=meta.tags, desc=meta.desc,
        )

    def process(self, e: Event) -> list[Alert]:
        """Evaluate one event; the alerts it raises (rules first, in load order, then sequences)."""
        self.events += 1
        kind = e.kind
        entry = self._index.get(kind)
        if entry is None:
            entry = self._build(kind)
        self._kind_events[kind] = self._kind_events.get(kind, 0) + 1
        rules, seqs = entry
        ctx = self._ctx
        if self._want_first_seen:
            ctx.first_seen = self._first_seen(e)
        if self._want_tree:
            ctx.tree = self._tree(e)
        out: list[Alert] = []
        for r in rules:
            if r.pred(e, ctx):
                out.append(self._alert(r.meta, e))
        for m in seqs:
            hit = m.feed(e, ctx)
            if hit is not None:
                out.append(self._alert(m.seq.meta, e, hit[1], hit[0]))
        if self.matchers and self.events % _SWEEP_EVERY == 0:
            for m in self.matchers:
                m.sweep(e.time)
        return out

    def process_batch(self, events: Iterable[Event]) -> list[Alert]:
        """Evaluate events in order; all alerts raised, in order."""
        out: list[Alert] = []
        process = self.process
        for e in events:
            hits = process(e)
            if hits:
                out.extend(hits)
        return out

    def evaluations(self) -> dict[str, int]:
        """Per rule id: how many events its condition was evaluated for (from the kind index)."""
        out = {r.name: 0 for r in self.rules}
        for kind, n in self._kind_events.items():
            rules, _ = self._index.get(kind) or self._build(kind)
            for r in rules:
                out[r.name] += n
        return out

    def stats(self) -> dict[str, Any]:
        """Counters: events, alerts (total and per rule), evaluations, state sizes and evictions."""
        return {
            "events": self.events,
            "alerts": self.alerts,
            "rules": len(self.rules),
            "sequences": len(self.matchers),
            "alerts_by_rule": dict(self._alerts_by_rule),
            "evaluations": sum(self.evaluations().values()),
            "first_seen_entries": len(self._seen),
            "first_seen_evicted": self.first_seen_evicted,
            "tree_entries": len(self._roots),
            "tree_evicted": self.tree_evicted,
            "sequence_state": {m.seq.name: m.stats() for m in self.matchers},
        }

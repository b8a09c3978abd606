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

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from runwatch.alerts.model import Alert, alert_from_event
from runwatch.events import UNCONFIRMED_ATTR, Event
from runwatch.rules.compiler import IndexTerm
from runwatch.rules.fields import EvalCtx, Getter, parse_ip
from runwatch.rules.model import Rule, RuleMeta, RuleSet
from runwatch.rules.reuse import IdentityReuse
from runwatch.rules.sequences import SequenceMatcher, matcher_for

_NOT_ROOTS = frozenset({0, 1, 2})  # never a tree root: no parent, init, kthreadd
_SWEEP_EVERY = 4096


class _KindIndex:
    """The rules and sequences for one event kind, with value indexes over top-level terms.

    Each rule goes to exactly one place: the bucket of its first ``=``/``in`` term on a field
    with many values, else of its first ``startswith`` term, else ``endswith``, else an address
    block, else a required substring (``contains``/``icontains``/glob literal, found with one
    regex per field), else an ``=``/``in`` term on a field of few values (:data:`LOW_SELECTIVITY`),
    else ``always``.
    A rule's full predicate is still evaluated, so the index only has to never miss.
    """

    __slots__ = ("always", "cidr", "eq", "lit", "plain", "prefix", "rules", "seqs", "suffix")

    def __init__(self, rules: tuple[Rule, ...], seqs: tuple[SequenceMatcher, ...]) -> None:
        self.rules = rules
        self.seqs = seqs
        always: list[Rule] = []
        eq: dict[str, tuple[Getter, dict[Any, list[Rule]]]] = {}
        affix: dict[tuple[str, str], tuple[Getter, dict[str, list[Rule]]]] = {}
        lit: dict[tuple[str, str], tuple[Getter, dict[str, list[Rule]]]] = {}
        cidr: dict[str, tuple[Getter, dict[tuple[int, int], list[Rule]]]] = {}
        for r in rules:
            term = _pick(r.index)
            if term is None:
                always.append(r)
            elif term.mode == "eq":
                _, buckets = eq.setdefault(term.spec.name, (term.spec.get, {}))
                for v in set(term.values):
                    buckets.setdefault(v, []).append(r)
            elif term.mode == "cidr":
                _, cbuckets = cidr.setdefault(term.spec.name, (term.spec.get, {}))
                for key in {k for net in term.values for k in _net_keys(net)}:
                    cbuckets.setdefault(key, []).append(r)
            elif term.mode in ("prefix", "suffix"):
                _, buckets = affix.setdefault((term.mode, term.spec.name), (term.spec.get, {}))
                for v in _minimal(term.values, term.mode):
                    buckets.setdefault(v, []).append(r)
            else:
                _, buckets = lit.setdefault((term.mode, term.spec.name), (term.spec.get, {}))
                for v in set(term.values):
                    buckets.setdefault(v, []).append(r)
        self.always = tuple(always)
        self.eq = tuple((g, {k: tuple(v) for k, v in b.items()}) for g, b in eq.values())
        self.prefix = tuple((g, tuple(sorted({len(k) for k in b})), {k: tuple(v) for k, v in b.items()})
                            for (mode, _), (g, b) in affix.items() if mode == "prefix")
        self.suffix = tuple((g, tuple(sorted({len(k) for k in b})), {k: tuple(v) for k, v in b.items()})
                            for (mode, _), (g, b) in affix.items() if mode == "suffix")
        self.lit = tuple(_literal_index(g, mode == "icontains", b) for (mode, _), (g, b) in lit.items())
        self.cidr = tuple((g, {k: tuple(v) for k, v in b.items()}) for g, b in cidr.values())
        # no value index: always == all rules
        self.plain = not (self.eq or self.prefix or self.suffix or self.lit or self.cidr)

    def candidates(self, e: Event, c: EvalCtx) -> tuple[Rule, ...] | list[Rule]:
        """The rules that may match ``e`` (each at most once, in no particular order)."""
        if self.plain:
            return self.always
        hits: list[Rule] = list(self.always)
        for g, buckets in self.eq:
            v = g(e, c)
            if v is not None:
                found = buckets.get(v)
                if found:
                    hits.extend(found)
        for g, lengths, buckets in self.prefix:
            v = g(e, c)
            if v:
                n = len(v)
                for length in lengths:
                    if length > n:
                        break
                    found = buckets.get(v[:length])
                    if found:
                        hits.extend(found)
        for g, lengths, buckets in self.suffix:
            v = g(e, c)
            if v:
                n = len(v)
                for length in lengths:
                    if length > n:
                        break
                    found = buckets.get(v[n - length:])
                    if found:
                        hits.extend(found)
        for g, cbuckets in self.cidr:
            v = g(e, c)
            ip = parse_ip(v) if v else None
            if ip is not None:
                found = cbuckets.get((4, int(ip) >> 24) if ip.version == 4 else (6, int(ip) >> 112))
                if found:
                    hits.extend(found)
        if self.lit:
            before = len(hits)
            for g, lower, finditer, by_literal in self.lit:
                v = g(e, c)
                if v:
                    for m in finditer(v.lower() if lower else v):
                        hits.extend(by_literal[m.group(1)])
            if len(hits) > before:  # several literals of one rule may occur in one value
                return list(dict.fromkeys(hits))
        return hits


def _net_keys(net: Any) -> list[tuple[int, int]]:
    """Buckets (version, top 8 bits of IPv4 / top 16 of IPv6) covering a network; [] if too wide."""
    bits, top = (32, 8) if net.version == 4 else (128, 16)
    if net.prefixlen >= top:
        return [(net.version, int(net.network_address) >> (bits - top))]
    if top - net.prefixlen > 8:
        return []
    first = int(net.network_address) >> (bits - top)
    return [(net.version, first + i) for i in range(1 << (top - net.prefixlen))]


#: Fields whose values fall in a handful of classes (an open's intent, a workload's role, a protocol,
#: a flag): an ``=`` term on one of them sends a rule to a bucket that most events of its kind
#: reach, so any other term of the rule is the better index, and these come last.
LOW_SELECTIVITY: frozenset[str] = frozenset({
    "file.intent", "workload.role", "container.runtime", "net.proto", "net.family", "net.direction",
    "proc.euid", "proc.uid", "proc.tty", "evt.attr[setuid]", "evt.attr[setgid]", "identity.source",
})


def _usable(t: IndexTerm, mode: str) -> bool:
    if t.mode != mode or not t.values or not all(isinstance(v, str | int) for v in t.values):
        return False
    return mode == "eq" or all(v != "" for v in t.values)


def _pick(terms: tuple[IndexTerm, ...]) -> IndexTerm | None:
    """The term a rule is indexed by: the most selective kind of term it has. Exact values of a
    field with many values first, then affixes, an address block, required substrings, and exact
    values of a :data:`LOW_SELECTIVITY` field last (a rule whose only term is one still gets it)."""
    for t in terms:
        if t.mode == "cidr" and t.values and all(_net_keys(n) for n in t.values):
            cidr_term: IndexTerm | None = t
            break
    else:
        cidr_term = None
    for mode in ("eq", "prefix", "suffix", "cidr", "contains", "icontains", "eq-low"):
        if mode == "cidr":
            if cidr_term is not None:
                return cidr_term
            continue
        low = mode == "eq-low"
        for t in terms:
            if _usable(t, "eq" if low else mode) and (mode != "eq" or t.spec.name not in LOW_SELECTIVITY):
                return t
    return None


_LitIndex = tuple[Getter, bool, Callable[[str], Iterator[re.Match[str]]], dict[str, tuple[Rule, ...]]]


def _literal_index(get: Getter, lower: bool, buckets: dict[str, list[Rule]]) -> _LitIndex:
    """One regex finding, at every position, the longest literal that starts there.

    Any other literal starting at that position is a prefix of the one found, so each literal
    maps to its own rules plus those of its prefixes: no occurrence is missed.
    """
    lits = sorted(buckets, key=len, reverse=True)
    rx = re.compile("(?=(" + "|".join(re.escape(x) for x in lits) + "))", re.DOTALL)
    by_literal = {x: tuple(dict.fromkeys(r for y in lits if x.startswith(y) for r in buckets[y])) for x in lits}
    return get, lower, rx.finditer, by_literal


def _minimal(values: tuple[Any, ...], mode: str) -> list[str]:
    """Affixes with those covered by a shorter one dropped, so a rule is found at most once."""
    out: list[str] = []
    for v in sorted(set(values), key=len):
        if not any((v.startswith(o) if mode == "prefix" else v.endswith(o)) for o in out):
            out.append(v)
    return out


class Engine:
    """Evaluates a rule set against events. Disabled rules are not evaluated.

    ``max_first_seen``: destinations remembered for ``net.dst.first_seen``;
    ``max_tree``: pids remembered for ``proc.tree``; ``sequence_max_keys``: keys per sequence.
    ``include``: rule/sequence ids evaluated even when disabled (the rule-test runner uses it);
    ``count_evaluations``: keep per-rule evaluation counts (:meth:`evaluations`; costs a little).
    """

    def __init__(self, ruleset: RuleSet, *, max_first_seen: int = 65_536, max_tree: int = 65_536,
                 sequence_max_keys: int = 10_000, include: Iterable[str] = (),
                 count_evaluations: bool = False) -> None:
        also = set(include)
        self.ruleset = ruleset
        self.rules: list[Rule] = [r for r in ruleset.rules if r.meta.enabled or r.name in also]
        self.matchers = [matcher_for(s, sequence_max_keys) for s in ruleset.sequences
                         if s.meta.enabled or s.name in also]
        needs: set[str] = set()
        for r in self.rules:
            needs |= r.needs
        for m in self.matchers:
            needs |= m.seq.needs
        self._want_first_seen = "first_seen" in needs
        self._want_tree = "tree" in needs
        self._want_reuse = "reuse" in needs
        self._reuse = IdentityReuse()
        self._ctx = EvalCtx()
        self._index: dict[str, _KindIndex] = {}
        self._pos = {r.name: i for i, r in enumerate(self.rules)}
        self.count_evaluations = count_evaluations
        self._evals: dict[str, int] = dict.fromkeys(self._pos, 0)
        self.evaluated = 0
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
    def _build(self, kind: str) -> _KindIndex:
        rules = tuple(r for r in self.rules if r.kinds is None or r.kinds(kind))
        seqs = tuple(m for m in self.matchers if any(k is None or k(kind) for k in m.seq.step_kinds))
        entry = _KindIndex(rules, seqs)
        if len(self._index) < 4096:  # kinds are a small closed set; guard against junk input
            self._index[kind] = entry
        return entry

    def candidates(self, kind: str) -> tuple[str, ...]:
        """Ids of the rules and sequences that may be evaluated for events of ``kind``."""
        ix = self._index.get(kind) or self._build(kind)
        return tuple(r.name for r in ix.rules) + tuple(m.seq.name for m in ix.seqs)

    def candidates_of(self, e: Event, c: EvalCtx) -> tuple[Rule, ...] | list[Rule]:
        """The rules the index hands ``e`` to (each then has its full condition evaluated)."""
        ix = self._index.get(e.kind) or self._build(e.kind)
        return ix.candidates(e, c)

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
        """Evaluate one event; the alerts it raises (rules in load order, then sequences)."""
        return self.process_batch((e,))

    def process_batch(self, events: Iterable[Event]) -> list[Alert]:
        """Evaluate events in order; all alerts raised, in order (per event: rules, then sequences).

        This is the hot loop: engine attributes are read into locals once per batch.
        """
        out: list[Alert] = []
        index, build, ctx = self._index, self._build, self._ctx
        want_first_seen, want_tree, want_reuse = self._want_first_seen, self._want_tree, self._want_reuse
        counting, evals, pos = self.count_evaluations, self._evals, self._pos
        sweep = bool(self.matchers)
        n_events, evaluated = self.events, 0
        for e in events:
            n_events += 1
            if e.attrs is not None and e.attrs.get(UNCONFIRMED_ATTR):
                continue  # a claim the kernel did not confirm is never a rule's subject
            ix = index.get(e.kind)
            if ix is None:
                ix = build(e.kind)
            if want_first_seen:
                ctx.first_seen = self._first_seen(e)
            if want_tree:
                ctx.tree = self._tree(e)
            if want_reuse:
                ctx.reused_by = self._reuse.observe(e)
            cands = ix.always if ix.plain else ix.candidates(e, ctx)
            evaluated += len(cands)
            if counting:
                for r in cands:
                    evals[r.name] += 1
            first = len(out)
            for r in cands:
                if r.pred(e, ctx):
                    out.append(self._alert(r.meta, e))
            if len(out) - first > 1:
                out[first:] = sorted(out[first:], key=lambda a: pos[a.rule])
            if ix.seqs:
                for m in ix.seqs:
                    hit = m.feed(e, ctx)
                    if hit is not None:
                        out.append(self._alert(m.seq.meta, e, hit[1], hit[0]))
            if sweep and n_events % _SWEEP_EVERY == 0:
                for m in self.matchers:
                    m.sweep(e.time)
        self.events = n_events
        self.evaluated += evaluated
        return out

    def evaluations(self) -> dict[str, int]:
        """Per rule id: events its condition was evaluated for (needs ``count_evaluations``)."""
        if not self.count_evaluations:
            raise RuntimeError("per-rule evaluations are only kept with Engine(..., count_evaluations=True)")
        return dict(self._evals)

    def stats(self) -> dict[str, Any]:
        """Counters: events, alerts (total and per rule), evaluations, state sizes and evictions."""
        return {
            "events": self.events,
            "alerts": self.alerts,
            "rules": len(self.rules),
            "sequences": len(self.matchers),
            "alerts_by_rule": dict(self._alerts_by_rule),
            "evaluations": self.evaluated,
            "first_seen_entries": len(self._seen),
            "first_seen_evicted": self.first_seen_evicted,
            "tree_entries": len(self._roots),
            "tree_evicted": self.tree_evicted,
            "sequence_state": {m.seq.name: m.stats() for m in self.matchers},
        }

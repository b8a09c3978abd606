"""What a self-test found: per container and canary ``seen`` (with the delay), ``missed``, ``not
run`` (the container lacks the tool, or the exec failed) or ``not covered`` (the host's sensor
cannot see that kind at all); and the scope the run had. Rendered as text or JSON."""

from __future__ import annotations

import msgspec

from runwatch.textsafe import printable

SEEN, MISSED, NOT_RUN, NOT_COVERED = "seen", "missed", "not run", "not covered"


class CanaryResult(msgspec.Struct, kw_only=True):
    """One canary in one container."""

    kind: str
    status: str  # seen | missed | not run | not covered
    delay_ms: int | None = None  # from the start of the canary's exec to its event in the pipeline
    detail: str | None = None  # why it was not run


class ContainerResult(msgspec.Struct, kw_only=True):
    """One container: who it is and what each canary gave.

    ``result``: ``ok`` (every canary that ran and the host covers was seen), ``partial`` (some
    were missed), ``blind`` (every one was missed)."""

    id: str
    name: str | None
    pod: str | None
    runtime: str
    privileged: bool | None
    devices: list[str]
    gpu: int | None
    canaries: dict[str, CanaryResult]
    result: str


class Scope(msgspec.Struct, kw_only=True):
    """What the run could see at all: the source, its hooks, and the kinds no hook provides."""

    source: str | None  # kernel | proc
    hooks_active: int
    hooks_refused: dict[str, str]  # program -> the kernel's reason
    kinds_not_seen: list[str]  # every kind no active hook provides on this host
    notices: list[str]


class Report(msgspec.Struct, kw_only=True):
    """The whole self-test; ``ok`` when no container is blind or partial."""

    scope: Scope
    containers: list[ContainerResult]
    blind: list[str]  # the labels of the containers not ok

    @property
    def ok(self) -> bool:
        return not self.blind


def verdict(results: dict[str, CanaryResult]) -> str:
    """``ok``, ``partial`` or ``blind`` from a container's canary results (see ContainerResult)."""
    ran = [r for r in results.values() if r.status in (SEEN, MISSED)]
    missed = [r for r in ran if r.status == MISSED]
    if not missed:
        return "ok"
    return "blind" if len(missed) == len(ran) else "partial"


def to_json(report: Report) -> str:
    return msgspec.json.encode(report).decode()


def render_text(report: Report) -> str:
    """The scope lines, one row per container, one verdict line."""
    s = report.scope
    refused = ", ".join(f"{k} ({v})" for k, v in sorted(s.hooks_refused.items())) or "none"
    lines = [f"sources on: {s.source or 'none'} ({s.hooks_active} hook(s) active)",
             printable(f"hooks refused by the kernel: {refused}"),
             f"event kinds not seen on this host: {', '.join(s.kinds_not_seen) or 'none'}"]
    lines += [printable(f"note: {n}") for n in s.notices]
    names = list(report.containers[0].canaries) if report.containers else []
    rows = [("CONTAINER", "POD", "RUNTIME", *(n.upper() for n in names), "RESULT")]
    for c in report.containers:
        cells = []
        for n in names:
            r = c.canaries[n]
            cells.append(f"seen {r.delay_ms}ms" if r.status == SEEN and r.delay_ms is not None else r.status)
        flags = ",".join(f for f, on in (("privileged", c.privileged), ("devices=" + "+".join(c.devices), c.devices))
                         if on)
        name = f"{c.name or c.id[:12]} ({c.id[:12]})" + (f" [{flags}]" if flags else "")
        rows.append(tuple(printable(v) for v in (name, c.pod or "-", c.runtime, *cells, c.result)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if not report.containers:
        lines.append("no container in scope")
    elif report.ok:
        lines.append(f"selftest passed: {len(report.containers)} container(s) seen")
    else:
        lines.append(f"selftest FAILED: blind or partly blind: {', '.join(report.blind)}")
    return "\n".join(lines) + "\n"

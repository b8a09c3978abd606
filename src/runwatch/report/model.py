"""The investigation report as typed data: what one workload did in a time window.

Built by :func:`runwatch.report.build.build_report` from the store; rendered by
:mod:`runwatch.report.render_md`, :mod:`~runwatch.report.render_json` and
:mod:`~runwatch.report.render_html`. Nothing here reads the store or formats text, so another
front end (a web console) can build once and show it its own way. Times are nanoseconds since
the epoch. Secrets appear by name or path only: the store never holds a value.

Events carry no byte counts (``net.connect``/``net.send`` say where, not how much), so
:attr:`Report.bytes_known` is ``False`` and every :attr:`Egress.bytes` is ``None``: the report
says a connection was made after a secret was read, and by which tool call, not how much left.

The structs are not tracked by the garbage collector (``gc=False``): a report of a busy
workload holds hundreds of thousands of them and they never form reference cycles.
"""

from __future__ import annotations

import msgspec

from runwatch.alerts.model import Alert
from runwatch.events import ToolCall


class Identity(msgspec.Struct, kw_only=True, gc=False):
    """One container of the workload, as its newest stored event describes it."""

    id: str
    runtime: str
    name: str | None = None
    pod: str | None = None
    namespace: str | None = None
    image: str | None = None
    image_digest: str | None = None
    spiffe_id: str | None = None
    spiffe_source: str | None = None
    owner: str | None = None  # the team or person answerable (runwatch.io/owner)
    escalation: str | None = None
    controller: str | None = None  # Kind/name of the pod's controller
    role: str | None = None
    service_account: str | None = None
    node: str | None = None
    first_ns: int | None = None  # first and last event of this container in the window
    last_ns: int | None = None
    events: int = 0


class Entry(msgspec.Struct, kw_only=True, gc=False):
    """One timeline line. ``mark`` groups it for drawing: ``ai`` (SDK/OTLP), ``exec``,
    ``secret``, ``egress``, ``dns``, ``decision``, ``file``, ``net``, ``priv`` or ``other``."""

    time: int
    kind: str
    source: str
    mark: str
    text: str
    pid: int = 0
    exe: str = ""
    container: str | None = None  # container id
    call_id: str | None = None  # the tool call the event happened inside
    tool: str | None = None
    unattested: bool = False  # an instrumented agent's kernel event outside any tool call


class Process(msgspec.Struct, kw_only=True, gc=False):
    """One process of the workload (a fork or an exec starts one). ``node`` is its index in
    :attr:`Report.processes`; ``parent`` the parent's node, ``None`` for a root. ``ancestry``
    lists the executables above it from its exec (the ones outside the workload included)."""

    node: int
    pid: int
    ppid: int
    exe: str
    cmdline: str
    start_ns: int
    parent: int | None = None
    execs: int = 0  # execs this process made (0: forked only, still running its parent's program)
    programs: list[str] = msgspec.field(default_factory=list)  # what each exec ran, in order
    container: str | None = None
    call_id: str | None = None  # the tool call it was started in
    tool: str | None = None
    ancestry: list[str] = msgspec.field(default_factory=list)
    exit_code: int | None = None
    signal: int | None = None
    children: list[int] = msgspec.field(default_factory=list)


class ToolCallRecord(msgspec.Struct, kw_only=True, gc=False):
    """One tool call and the kernel events attributed to it."""

    call_id: str
    name: str
    agent: str | None = None
    route: str | None = None  # the prompt route it came in on
    start_ns: int | None = None
    end_ns: int | None = None
    status: str | None = None
    verdict: str | None = None  # a policy decision on the call itself
    kinds: dict[str, int] = msgspec.field(default_factory=dict)  # attributed kernel events by kind
    events: list[Entry] = msgspec.field(default_factory=list)


class Route(msgspec.Struct, kw_only=True, gc=False):
    """A prompt route and what came in on it."""

    route: str
    first_ns: int
    model_calls: int = 0
    tool_calls: list[str] = msgspec.field(default_factory=list)  # call ids, in order


class Egress(msgspec.Struct, kw_only=True, gc=False):
    """One outbound connection or datagram (``net.connect``/``net.send``) or DNS question."""

    time: int
    kind: str
    destination: str  # ip:port, or the name asked for (dns.query)
    proto: str | None = None
    name: str | None = None  # the DNS name the address was resolved from
    connected: bool = True  # False: the connect failed (result an errno)
    result: int | None = None
    pid: int = 0
    exe: str = ""
    container: str | None = None
    call_id: str | None = None
    tool: str | None = None
    bytes: int | None = None  # never known today (see the module docstring)


class SecretRead(msgspec.Struct, kw_only=True, gc=False):
    """A secret read (a ``file.open`` of a secret path, or an SDK ``secret.access``) and the
    outbound traffic of the workload from then to the end of the window. An SDK report of a
    file secret that the kernel saw opened in the same tool call is that read (one record,
    both in ``sources``)."""

    time: int
    secret: str  # name or path; never a value
    how: str  # file | env | vault | ... (secret.access's kind)
    sources: list[str] = msgspec.field(default_factory=list)  # who reported it: kernel, sdk, ...
    pid: int = 0
    exe: str = ""
    container: str | None = None
    call_id: str | None = None
    tool: str | None = None
    data_left: bool = False  # a connection to another host was made afterwards
    egress: list[Egress] = msgspec.field(default_factory=list)  # connects/sends afterwards (first ones)
    egress_total: int = 0  # how many there were in all


class Destination(msgspec.Struct, kw_only=True, gc=False):
    """Where the workload sent to, summed over the window."""

    destination: str
    kind: str  # net.connect | net.send | dns.query
    proto: str | None = None
    name: str | None = None
    first_ns: int = 0
    last_ns: int = 0
    count: int = 0
    failed: int = 0
    tools: list[str] = msgspec.field(default_factory=list)  # tool names it happened in
    after_secret: bool = False  # first seen after a secret was read


class Decision(msgspec.Struct, kw_only=True, gc=False):
    """A policy decision (``policy.decision``, or the verdict on a ``tool.start``)."""

    time: int
    policy: str
    verdict: str
    layer: str | None = None
    target: str | None = None
    rule: str | None = None
    reason: str | None = None
    mode: str | None = None
    call_id: str | None = None
    tool: str | None = None


class Counts(msgspec.Struct, kw_only=True, gc=False):
    """Totals over the window (before any list is cut short)."""

    events: int = 0
    execs: int = 0
    processes: int = 0
    tool_calls: int = 0
    secret_reads: int = 0
    egress: int = 0
    dns: int = 0
    decisions: int = 0
    alerts: int = 0
    unattested: int = 0


class Report(msgspec.Struct, kw_only=True, gc=False):
    """What one workload did between ``since_ns`` and ``until_ns``."""

    workload: str  # as asked for
    db: str
    since_ns: int | None
    until_ns: int | None
    generated_ns: int
    first_ns: int | None = None  # the first and last event found
    last_ns: int | None = None
    containers: list[Identity] = msgspec.field(default_factory=list)
    counts: Counts = msgspec.field(default_factory=Counts)
    timeline: list[Entry] = msgspec.field(default_factory=list)
    timeline_omitted: int = 0  # entries beyond the limit, left out
    processes: list[Process] = msgspec.field(default_factory=list)
    tool_calls: list[ToolCallRecord] = msgspec.field(default_factory=list)
    routes: list[Route] = msgspec.field(default_factory=list)
    secrets: list[SecretRead] = msgspec.field(default_factory=list)
    destinations: list[Destination] = msgspec.field(default_factory=list)
    decisions: list[Decision] = msgspec.field(default_factory=list)
    alerts: list[Alert] = msgspec.field(default_factory=list)
    data_left: bool = False  # a secret read was followed by a connection to another host
    bytes_known: bool = False


def call_of(tc: ToolCall | None) -> tuple[str | None, str | None]:
    """(call id, tool name) of a tool call, or (None, None)."""
    return (tc.call_id, tc.name) if tc is not None else (None, None)

"""The console's Starlette application: pages, the live alert stream and the POST actions.

Pages: ``/workloads``, ``/alerts`` (and ``/alerts/ID``, its evidence), ``/timeline?w=``,
``/tree?w=``, ``/investigate?w=`` (with ``/report.md|json|html?w=``), ``/challenges`` and
``/health``; ``/alerts/stream`` is the server-sent event stream of new alerts. Every response
carries :data:`CSP`; the embedded report keeps the report's own, stricter policy.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runwatch.alerts.model import SEVERITY_ORDER, Alert
from runwatch.console import data
from runwatch.console.acks import AckBook, AckError
from runwatch.console.auth import COOKIE, CSRF_FIELD, CSRF_HEADER, Gate, safe_next, same_origin
from runwatch.report import svg
from runwatch.report.activity import summary
from runwatch.report.findings import call_label
from runwatch.report.model import Report
from runwatch.report.render_html import CSP as REPORT_CSP
from runwatch.report.timearg import TimeArgError, iso, parse_time
from runwatch.report.workload import WorkloadNotFound
from runwatch.store.source import Source, query_alerts
from runwatch.store.sqlite_layout import StoreError
from runwatch.textsafe import printable

HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
"""The console's Content-Security-Policy: its own script and style files, nothing inline."""
PAGES = (("workloads", "Workloads"), ("alerts", "Alerts"), ("challenges", "Challenges"), ("health", "Health"))
ALERTS_SHOWN = 500
"""Alerts listed (the newest); the count above the list is of all that match."""
STREAM_MAX_S = 3600.0
"""The longest one stream runs; the browser then reconnects on its own."""


@dataclass
class ConsoleConfig:
    """What one console serves: the store, the acknowledgements file, the control socket and the token."""

    db: Source  # the store, or the lake (LakeDir)
    token: str
    acks: str
    control_socket: str
    poll_s: float = 1.0
    live: Callable[[], Iterable[Any]] | None = None  # the live session's metric families (watch --console)


class _Headers:
    """ASGI middleware adding the security headers (the report page sets its own CSP)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", CSP.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                            (b"cache-control", b"no-store")]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _finalize(value: object) -> object:
    """Every value a template prints: control characters written out, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return printable(value)
    return value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             finalize=_finalize, undefined=jinja2.StrictUndefined)
    env.filters["iso"] = lambda t: iso(t) if t is not None else "-"
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["call"] = call_label
    env.filters["what"] = summary
    return env


def alert_json(a: Alert, workload: str | None) -> dict[str, Any]:
    """What the live stream sends of one alert (the page draws it with textContent only)."""
    return {"id": a.id, "time": iso(a.time), "severity": a.severity, "rule": a.rule, "output": printable(a.output),
            "workload": workload, "tool": call_label(a.tool_call.call_id, a.tool_call.name) if a.tool_call else None,
            "href": f"/alerts/{quote(a.id, safe='')}"}


class Console:
    """The pages and actions over one :class:`ConsoleConfig`."""

    def __init__(self, cfg: ConsoleConfig) -> None:
        self.cfg = cfg
        self.gate = Gate(cfg.token)
        self.acks = AckBook(cfg.acks)
        self.env = _environment()

    # -- plumbing ---------------------------------------------------------------------------

    def authed(self, request: Request) -> str | None:
        """How the request is authenticated (``bearer`` or ``cookie``), or None."""
        if self.gate.bearer(request.headers.get("authorization")):
            return "bearer"
        if self.gate.cookie(request.cookies.get(COOKIE)):
            return "cookie"
        return None

    def page(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        """Render template ``name`` with the navigation and the CSRF value."""
        body = self.env.get_template(name).render(pages=PAGES, path=request.url.path, csrf=self.gate.csrf,
                                                  authed=self.authed(request) is not None, **ctx)
        return HTMLResponse(body, status_code=status)

    def problem(self, request: Request, status: int, message: str) -> HTMLResponse:
        """A page saying one line of what went wrong."""
        return self.page(request, "problem.html", status=status, title="Problem", message=message)

    async def form(self, request: Request) -> dict[str, str]:
        """An urlencoded POST body as one value per field (the first)."""
        raw = await request.body()
        if len(raw) > 64 * 1024:
            return {}
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}

    async def check_post(self, request: Request) -> tuple[dict[str, str], Response | None]:
        """The form of an authenticated, CSRF-safe POST, or the response refusing it."""
        how = self.authed(request)
        if how is None:
            return {}, PlainTextResponse("not logged in: send Authorization: Bearer TOKEN or log in at /login\n",
                                         status_code=401, headers={"www-authenticate": "Bearer"})
        fields = await self.form(request)
        if how == "cookie":
            if not same_origin(request.headers.get("origin"), request.headers.get("host")):
                return fields, PlainTextResponse("cross-origin request refused\n", status_code=403)
            if not self.gate.csrf_ok(request.headers.get(CSRF_HEADER) or fields.get(CSRF_FIELD)):
                return fields, PlainTextResponse("missing or wrong CSRF token\n", status_code=403)
        return fields, None

    def guarded(self, handler: Callable[[Request], Response]) -> Callable[[Request], Awaitable[Response]]:
        """A GET page that needs the token: browsers without it are sent to the login form."""

        async def run(request: Request) -> Response:
            if self.authed(request) is None:
                if "text/html" in request.headers.get("accept", ""):
                    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)
                return PlainTextResponse("not logged in: send Authorization: Bearer TOKEN or log in at /login\n",
                                         status_code=401, headers={"www-authenticate": "Bearer"})
            try:
                return await asyncio.to_thread(handler, request)
            except (StoreError, AckError) as exc:
                return self.problem(request, 503, str(exc))
            except WorkloadNotFound as exc:
                return self.problem(request, 404, str(exc))
            except TimeArgError as exc:
                return self.problem(request, 400, str(exc))

        return run

    # -- login ------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        """The login form (GET) and its answer (POST): the token for an HttpOnly cookie."""
        if request.method == "GET":
            return self.page(request, "login.html", title="Log in", next=safe_next(request.query_params.get("next")),
                             error=None)
        fields = await self.form(request)
        nxt = safe_next(fields.get("next"))
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            return PlainTextResponse("cross-origin request refused\n", status_code=403)
        if not self.gate.token_ok(fields.get("token", "")):
            return self.page(request, "login.html", status=401, title="Log in", next=nxt, error="wrong token")
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, self.gate.cookie_value, httponly=True, samesite="strict", path="/")
        return resp

    async def logout(self, request: Request) -> Response:
        """Forget the login cookie."""
        _fields, refused = await self.check_post(request)
        if refused is not None:
            return refused
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- pages --------------------------------------------------------------------------------

    def workloads_page(self, request: Request) -> Response:
        """Every workload: identity, containers, role, owner, policies, alerts, last seen, reviews."""
        rows = data.workloads(self.cfg.db)
        return self.page(request, "workloads.html", title="Workloads", rows=rows,
                         overdue=sum(1 for r in rows if r.overdue), severities=list(SEVERITY_ORDER))

    def _filter(self, request: Request) -> data.AlertFilter:
        q = request.query_params
        return data.AlertFilter(severity=q.get("severity", ""), rule=q.get("rule", ""),
                                workload=q.get("workload", ""), framework=q.get("framework", ""))

    def alerts_page(self, request: Request) -> Response:
        """The alerts that match the filters, newest first, with their acknowledgements."""
        f = self._filter(request)
        every = query_alerts(self.cfg.db)
        names = data.container_names(self.cfg.db)
        shown = [(a, names.get(a.workload.id or "")) for a in reversed(every)
                 if f.matches(a, names.get(a.workload.id or ""))]
        return self.page(request, "alerts.html", title="Alerts", items=shown[:ALERTS_SHOWN], total=len(shown),
                         every=len(every), acks=self.acks.all(), f=f, severities=list(SEVERITY_ORDER),
                         rules=sorted({a.rule for a in every}), workloads=sorted(set(names.values())),
                         frameworks=sorted({x for a in every for x in data.frameworks_of(a)}),
                         newest=every[-1].time if every else 0, stream_query=f.query())

    def alert_page(self, request: Request) -> Response:
        """One alert and the events it names as evidence."""
        aid = request.path_params["alert_id"]
        a = data.find_alert(self.cfg.db, aid)
        if a is None:
            return self.problem(request, 404, f"no alert {aid!r} in {self.cfg.db}")
        names = data.container_names(self.cfg.db)
        return self.page(request, "alert.html", title=f"Alert {a.rule}", a=a, workload=names.get(a.workload.id or ""),
                         events=data.evidence(self.cfg.db, a), ack=self.acks.all().get(a.id),
                         frameworks=data.frameworks_of(a))

    def _report(self, request: Request) -> tuple[str, Report]:
        from runwatch.report.build import build_report

        w = request.query_params.get("w", "")
        if not w:
            raise WorkloadNotFound("no workload given (?w=NAME)")
        since, until = request.query_params.get("since") or None, request.query_params.get("until") or None
        since_ns = parse_time(since) if since else None
        until_ns = parse_time(until) if until else None
        if since_ns is not None and until_ns is not None and since_ns >= until_ns:
            raise TimeArgError(f"since ({since}) must be before until ({until})")
        return w, build_report(self.cfg.db, w, since_ns=since_ns, until_ns=until_ns)

    def _zoom(self, request: Request) -> str:
        """The window's ``&since=..&until=..`` (what is set), for links to the other views."""
        q = request.query_params
        return "".join(f"&{k}={quote(q[k], safe='')}" for k in ("since", "until") if q.get(k))

    def timeline_page(self, request: Request) -> Response:
        """Tool calls with their kernel events, activity outside any call, routes, model calls, decisions."""
        w, r = self._report(request)
        outside = [e for e in r.timeline if e.call_id is None and e.source != "sdk"]
        model_calls = [e for e in r.timeline if e.kind == "model.call"]
        return self.page(request, "timeline.html", title=f"Timeline: {w}", w=w, r=r,
                         drawing=Markup(svg.timeline(r)), outside=outside, model_calls=model_calls,
                         zoom=self._zoom(request), since=request.query_params.get("since", ""),
                         until=request.query_params.get("until", ""))

    def tree_page(self, request: Request) -> Response:
        """The report's process tree, with the processes that raised alerts marked."""
        w, r = self._report(request)
        alerting = frozenset(a.process.pid for a in r.alerts if a.process.pid)
        marked = [p for p in r.processes if p.pid in alerting]
        return self.page(request, "tree.html", title=f"Process tree: {w}", w=w, r=r, marked=marked,
                         drawing=Markup(svg.process_tree(r, marked=alerting)), zoom=self._zoom(request))

    def investigate_page(self, request: Request) -> Response:
        """The investigation report in the page (a sandboxed frame) and as downloads."""
        w, r = self._report(request)
        zoom = self._zoom(request)
        return self.page(request, "investigate.html", title=f"Investigation: {w}", w=w, r=r,
                         query=f"w={quote(w, safe='')}{zoom}", zoom=zoom)

    def report_file(self, request: Request) -> Response:
        """The report as a download (``/report.md``, ``.json``) or the page's frame (``.html``)."""
        fmt = request.path_params["fmt"]
        if fmt not in ("md", "json", "html"):
            return self.problem(request, 404, f"no report format {fmt!r} (md, json or html)")
        w, r = self._report(request)
        base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in w)[:80] or "workload"
        attach = {"content-disposition": f'attachment; filename="runwatch-report-{base}.{fmt}"'}
        if fmt == "json":
            from runwatch.report.render_json import render as render_json

            return Response(render_json(r), media_type="application/json", headers=attach)
        if fmt == "md":
            from runwatch.report.render_md import render as render_md

            return Response(render_md(r), media_type="text/markdown; charset=utf-8", headers=attach)
        from runwatch.report.render_html import render as render_html

        headers = {"content-security-policy": REPORT_CSP + "; frame-ancestors 'self'",
                   "x-frame-options": "SAMEORIGIN"}
        if request.query_params.get("download"):
            headers.update(attach)
        return HTMLResponse(render_html(r), headers=headers)

    def challenges_page(self, request: Request) -> Response:
        """The running runwatch's pending challenges, from its control socket."""
        from runwatch.policy.cli import PolicyCliError, cli_challenges

        try:
            items, error = cli_challenges(self.cfg.control_socket), None
        except PolicyCliError as exc:
            items, error = [], str(exc)
        return self.page(request, "challenges.html", title="Challenges", items=items, error=error,
                         done=request.query_params.get("done"), socket=self.cfg.control_socket)

    def health_page(self, request: Request) -> Response:
        """Each recorded run: sources, hooks, drops, the store's counters and notices; served by a live
        session (``watch --console``), that session's metrics as well, read when the page is asked for."""
        live = data.live_metrics(self.cfg.live) if self.cfg.live is not None else None
        return self.page(request, "health.html", title="Health", runs=data.health(self.cfg.db), db=self.cfg.db,
                         live=live)

    # -- actions -------------------------------------------------------------------------------

    async def ack(self, request: Request) -> Response:
        """Acknowledge an alert (``by``: the form's name, else ``console``)."""
        fields, refused = await self.check_post(request)
        if refused is not None:
            return refused
        aid = request.path_params["alert_id"]
        if await asyncio.to_thread(data.find_alert, self.cfg.db, aid) is None:
            return PlainTextResponse(f"no alert {aid!r}\n", status_code=404)
        try:
            got = await asyncio.to_thread(self.acks.acknowledge, aid, fields.get("by") or "console", fields.get("note"))
        except AckError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=503)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"id": aid, "by": got.by, "time": iso(got.time)})
        return RedirectResponse(safe_next(fields.get("next") or "/alerts"), status_code=303)

    async def answer(self, request: Request) -> Response:
        """Approve or reject a challenge over the control socket, as ``runwatch approve`` does."""
        from runwatch.policy.cli import PolicyCliError, cli_approve, cli_reject

        fields, refused = await self.check_post(request)
        if refused is not None:
            return refused
        cid, verb = request.path_params["challenge_id"], request.path_params["verb"]
        if verb not in ("approve", "reject"):
            return PlainTextResponse("answer approve or reject\n", status_code=404)
        who = printable(" ".join((fields.get("by") or "").split())[:80])
        note = f"runwatch console ({who})" if who else "runwatch console"
        call = cli_approve if verb == "approve" else cli_reject
        try:
            line = await asyncio.to_thread(call, cid, self.cfg.control_socket, note)
        except PolicyCliError as exc:
            return PlainTextResponse(f"{exc}\n", status_code=409)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"result": line})
        return RedirectResponse(f"/challenges?done={quote(line, safe='')}", status_code=303)

    async def stream(self, request: Request) -> Response:
        """New alerts as server-sent events (``event: alert``), polled from the store."""
        if self.authed(request) is None:
            return PlainTextResponse("not logged in\n", status_code=401)
        f = self._filter(request)
        try:
            start = int(request.query_params.get("after", "0") or 0)
            limit_s = min(float(request.query_params.get("for", STREAM_MAX_S)), STREAM_MAX_S)
        except ValueError:
            return PlainTextResponse("after must be ns since the epoch, for a number of seconds\n", status_code=400)
        cursor = data.AlertCursor(self.cfg.db, start)
        if start:
            cursor.prime(await asyncio.to_thread(query_alerts, self.cfg.db, since_ns=start, until_ns=start + 1))

        async def events() -> AsyncIterator[str]:
            end = time.monotonic() + limit_s
            yield "retry: 2000\n\n"
            while time.monotonic() < end:
                try:
                    fresh = await asyncio.to_thread(cursor.poll)
                    names = await asyncio.to_thread(data.container_names, self.cfg.db) if fresh else {}
                except StoreError as exc:
                    yield f"event: problem\ndata: {json.dumps(str(exc))}\n\n"
                    fresh, names = [], {}
                for a in fresh:
                    w = names.get(a.workload.id or "")
                    if f.matches(a, w):
                        yield f"event: alert\ndata: {json.dumps(alert_json(a, w))}\n\n"
                yield ": tick\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(self.cfg.poll_s)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})


def create_app(cfg: ConsoleConfig) -> Starlette:
    """The console application over ``cfg``."""
    c = Console(cfg)

    async def home(request: Request) -> Response:
        return RedirectResponse("/workloads", status_code=303)

    routes = [
        Route("/", home),
        Route("/login", c.login, methods=["GET", "POST"]),
        Route("/logout", c.logout, methods=["POST"]),
        Route("/workloads", c.guarded(c.workloads_page)),
        Route("/alerts", c.guarded(c.alerts_page)),
        Route("/alerts/stream", c.stream),
        Route("/alerts/{alert_id}", c.guarded(c.alert_page)),
        Route("/alerts/{alert_id}/ack", c.ack, methods=["POST"]),
        Route("/timeline", c.guarded(c.timeline_page)),
        Route("/tree", c.guarded(c.tree_page)),
        Route("/investigate", c.guarded(c.investigate_page)),
        Route("/report.{fmt:str}", c.guarded(c.report_file)),
        Route("/challenges", c.guarded(c.challenges_page)),
        Route("/challenges/{challenge_id}/{verb}", c.answer, methods=["POST"]),
        Route("/health", c.guarded(c.health_page)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_Headers)
    return app


def default_control_socket() -> str:
    """The control socket the console answers challenges on unless told."""
    from runwatch.policy.server import DEFAULT_CONTROL_SOCKET

    return os.environ.get("RUNWATCH_CONTROL_SOCKET", DEFAULT_CONTROL_SOCKET)

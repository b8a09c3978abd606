"""A small Kubernetes API server for tests: ``/api/v1/pods`` list and watch, as the real one speaks them.

What it serves, over real HTTP on loopback:

* ``GET /api/v1/pods?fieldSelector=spec.nodeName=N[&limit=L&continue=T]``: a ``PodList`` with
  ``metadata.resourceVersion`` (and ``continue`` while more pages remain);
* ``GET /api/v1/pods?watch=true&resourceVersion=RV[&allowWatchBookmarks=true][&timeoutSeconds=S]``:
  a chunked stream of ``{"type": ..., "object": ...}`` lines, ``ADDED``/``MODIFIED``/``DELETED``
  for every change after RV, ``BOOKMARK`` (an object with only ``metadata.resourceVersion``)
  when :meth:`FakeKubeApi.bookmark` is called and the client asked for bookmarks, and a single
  ``ERROR`` with a ``Status`` of code 410 (reason ``Expired``) when RV is older than the
  compacted history (:meth:`FakeKubeApi.expire`); the stream ends after ``timeoutSeconds``.

Every resourceVersion is one counter, as etcd's revision. Each request is logged in
:attr:`FakeKubeApi.requests` as ``(kind, query)`` with kind ``list`` or ``watch``.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def pod_json(name: str, namespace: str, uid: str, node: str, *, containers: list[dict[str, Any]],
             labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
             service_account: str = "default", owner: tuple[str, str] | None = None,
             volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Pod object as the API serves it. Each of ``containers`` has ``name``, ``image`` and
    optionally ``id`` (``cri-o://...``), ``imageID``, ``securityContext``, ``resources``, ``volumeMounts``."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid, "labels": labels or {}}
    if annotations:
        meta["annotations"] = annotations
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": "00000000-0000-4000-8000-0000000000ff", "controller": True,
                                    "blockOwnerDeletion": True}]
    specs, statuses = [], []
    for c in containers:
        specs.append({k: v for k, v in c.items() if k in ("name", "image", "securityContext", "resources",
                                                            "volumeMounts", "command")})
        status: dict[str, Any] = {"name": c["name"], "image": c["image"], "imageID": c.get("imageID", ""),
                                  "ready": True, "restartCount": 0,
                                  "started": True, "state": {"running": {"startedAt": "2026-12-04T18:00:00Z"}}}
        if c.get("id"):
            status["containerID"] = c["id"]
        statuses.append(status)
    spec: dict[str, Any] = {"nodeName": node, "serviceAccountName": service_account,
                            "serviceAccount": service_account, "containers": specs, "restartPolicy": "Always"}
    if volumes:
        spec["volumes"] = volumes
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec,
            "status": {"phase": "Running", "containerStatuses": statuses}}


class FakeKubeApi:
    """The server and its state; use as a context manager (``url`` is where it listens)."""

    def __init__(self) -> None:
        self.rv = 100
        self.pods: dict[str, dict[str, Any]] = {}  # uid -> pod, with its metadata.resourceVersion
        self.history: list[tuple[int, str, dict[str, Any]]] = []  # (rv, type, object), in order
        self.compacted = 0  # a watch from an rv below this gets 410 Gone
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._closing = 0  # bumped to end every open watch stream
        self._cond = threading.Condition()
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-kube-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeKubeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop_watches()
        self._server.shutdown()
        self._server.server_close()

    # -- changes (each one resourceVersion) ---------------------------------------------

    def _change(self, kind: str, pod: dict[str, Any]) -> int:
        self.rv += 1
        pod = copy.deepcopy(pod)
        pod["metadata"]["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            self.pods.pop(pod["metadata"]["uid"], None)
        else:
            self.pods[pod["metadata"]["uid"]] = pod
        self.history.append((self.rv, kind, pod))
        return self.rv

    def add(self, pod: dict[str, Any]) -> int:
        with self._cond:
            rv = self._change("MODIFIED" if pod["metadata"]["uid"] in self.pods else "ADDED", pod)
            self._cond.notify_all()
            return rv

    def delete(self, uid: str) -> int:
        with self._cond:
            rv = self._change("DELETED", self.pods[uid])
            self._cond.notify_all()
            return rv

    def bookmark(self) -> int:
        """Send every open watch (that asked for bookmarks) a BOOKMARK at the current version."""
        with self._cond:
            obj = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.rv)}}
            self.history.append((self.rv, "BOOKMARK", obj))
            self._cond.notify_all()
            return self.rv

    def expire(self, *, add: list[dict[str, Any]] = (), delete: list[str] = ()) -> int:  # type: ignore[assignment]
        """End every open watch, apply ``add``/``delete`` unseen, and compact the history to now:
        a watch resumed from any earlier version gets 410 Gone and must list again."""
        with self._cond:
            self._closing += 1
            for pod in add:
                self._change("MODIFIED" if pod["metadata"]["uid"] in self.pods else "ADDED", pod)
            for uid in delete:
                self._change("DELETED", self.pods[uid])
            self.compacted = self.rv
            self.history = []
            self._cond.notify_all()
            return self.rv

    def drop_watches(self) -> None:
        """End every open watch stream (the client resumes from the last version it saw)."""
        with self._cond:
            self._closing += 1
            self._cond.notify_all()

    def wait_for(self, kind: str, count: int, timeout: float = 10.0) -> bool:
        """Wait until ``count`` requests of ``kind`` have come."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for k, _ in self.requests if k == kind) >= count:
                return True
            time.sleep(0.01)
        return False

    # -- serving ------------------------------------------------------------------------

    def _list(self, q: dict[str, str]) -> dict[str, Any]:
        with self._cond:
            items = [copy.deepcopy(p) for p in self.pods.values() if _selected(p, q)]
            rv = self.rv
        items.sort(key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
        start = int(q.get("continue") or 0)
        limit = int(q.get("limit") or 0) or len(items) or 1
        page = items[start:start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page}

    def _watch(self, q: dict[str, str]) -> Iterator[dict[str, Any]]:
        start = int(q.get("resourceVersion") or 0)
        bookmarks = q.get("allowWatchBookmarks") == "true"
        deadline = time.monotonic() + float(q.get("timeoutSeconds") or 1800)
        with self._cond:
            closing = self._closing
            if start < self.compacted:
                yield {"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f"too old resource version: {start} ({self.compacted})", "reason": "Expired",
                    "code": 410}}
                return
            pos = next((i for i, (rv, _, _) in enumerate(self.history) if rv > start), len(self.history))
        while True:
            with self._cond:
                while pos >= len(self.history) and self._closing == closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self._cond.wait(min(left, 0.5))
                if self._closing != closing:
                    return
                batch = self.history[pos:]
                pos = len(self.history)
            for _, kind, obj in batch:
                if kind == "BOOKMARK":
                    if bookmarks:
                        yield {"type": "BOOKMARK", "object": obj}
                elif _selected(obj, q):
                    yield {"type": kind, "object": obj}


def _selected(pod: dict[str, Any], q: dict[str, str]) -> bool:
    sel = q.get("fieldSelector") or ""
    for term in filter(None, sel.split(",")):
        key, _, value = term.partition("=")
        if key == "spec.nodeName" and pod.get("spec", {}).get("nodeName") != value:
            return False
        if key == "metadata.namespace" and pod["metadata"].get("namespace") != value:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    api: FakeKubeApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path != "/api/v1/pods":
            self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "code": 404, "message": f"the server could not find {url.path}"})
            return
        watching = q.get("watch") in ("true", "1")
        self.api.requests.append(("watch" if watching else "list", q))
        if not watching:
            self._json(200, self.api._list(q))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for ev in self.api._watch(q):
                line = json.dumps(ev).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

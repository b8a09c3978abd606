"""The outputs file (``--outputs FILE``) and the command-line shortcuts, as :class:`OutputSpec` s.

A YAML file::

    spool_dir: /var/lib/runwatch/spool     # optional; default: next to the store (<db>.spool)
    outputs:
      - name: pager                        # optional, default the type; unique; names the spool
        type: webhook                      # webhook | slack | syslog | ocsf | otlp
        url: https://hooks.example/runwatch
        secret_file: /etc/runwatch/hook.secret   # HMAC-SHA256 signature header
        route: {min_severity: high, tags: [exfiltration], owners: [team-pay*]}
        spool: {max_items: 10000, max_mb: 64}
        timeout: 5s
        retry: {initial: 500ms, max: 30s}

Every problem is a :class:`OutputsError` at ``file:line:col`` (all of them, in one pass:
:class:`OutputsLoadError`); files the file names (secrets, headers, TLS material) are read
at load time, so a missing one is reported before anything starts. The key tables below
(:data:`COMMON`, :data:`KEYS`) are what the file accepts; docs/outputs.md lists them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runwatch.config.errors import ConfigError, ConfigLoadError
from runwatch.config.values import parse_duration
from runwatch.config.yamlsrc import LocDict, LocList, load_yaml_documents
from runwatch.outputs.base import AlertOutput, Output, output_factory
from runwatch.outputs.delivery import RetryPolicy
from runwatch.outputs.http import TlsOptions, check_url, read_headers
from runwatch.outputs.jsonl import OutputError
from runwatch.outputs.routing import Route, routed
from runwatch.outputs.syslog import FACILITIES, parse_target
from runwatch.store.spool import SpoolLimits

NETWORK = ("webhook", "slack", "syslog", "otlp")
TYPES = (*NETWORK, "ocsf")
COMMON = ("type", "name", "route")
NETWORK_KEYS = ("spool", "queue", "timeout", "retry", "close_timeout")
HTTP_KEYS = ("url", "headers", "headers_file", "tls")
KEYS: dict[str, tuple[str, ...]] = {
    "webhook": (*HTTP_KEYS, "secret_file"),
    "slack": (*HTTP_KEYS, "secret_file"),
    "syslog": ("url", "facility", "hostname"),
    "otlp": (*HTTP_KEYS, "compression", "service_name"),
    "ocsf": ("path",),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEFAULT_SPOOL = SpoolLimits(events=10_000, bytes=64 << 20)


class OutputsError(ConfigError):
    """One located problem of an outputs file."""


class OutputsLoadError(ConfigLoadError[OutputsError]):
    """The outputs file did not load; ``errors`` holds every problem."""


@dataclass
class OutputSpec:
    """One configured output: the registered ``type``, its ``name`` and the factory's keyword options."""

    type: str
    name: str
    target: str  # url or path: the factory's first argument
    options: dict[str, Any] = field(default_factory=dict)
    route: Route | None = None

    def build(self) -> Output | AlertOutput:
        """The output (behind its route); OutputError (one line, naming it) for what only building can tell
        (TLS material that does not load)."""
        named = {"name": self.name} if self.type in NETWORK else {}
        try:
            return routed(output_factory(self.type)(self.target, **named, **self.options), self.route)
        except (OSError, ValueError) as exc:
            raise OutputError(f"output {self.name}: {exc}") from None


def default_spool_root(db: str | None) -> str:
    """Where spools go when nothing says: ``<db>.spool`` next to the store, else ``./runwatch.spool``."""
    return f"{db}.spool" if db and db != ":memory:" else "runwatch.spool"


def read_secret(path: str) -> bytes:
    """The secret in ``path`` (surrounding whitespace removed); ValueError (one line) if unreadable or empty."""
    try:
        with open(path, "rb") as fh:
            secret = fh.read(1 << 16).strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    if not secret:
        raise ValueError(f"secret file {path} is empty")
    return secret


class _Reader:
    """Collects located errors while one file is turned into specs."""

    def __init__(self, source: str, spool_root: str) -> None:
        self.source, self.spool_root = source, spool_root
        self.errors: list[OutputsError] = []

    def error(self, where: LocDict | LocList, key: str | int | None, message: str) -> None:
        if isinstance(where, LocDict) and isinstance(key, str):
            at = where.value_location(key)
        elif isinstance(where, LocList) and isinstance(key, int):
            at = where.item_location(key)
        else:
            at = where.location if isinstance(where, LocDict) else where.item_location(-1)
        self.errors.append(OutputsError(at.path, at.line, message, column=at.column))

    def get(self, m: LocDict, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = m.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.error(m, key, f"{key}: expected {what}")
            return None
        return value

    def convert(self, m: LocDict, key: str, fn: Callable[[Any], Any]) -> Any:
        if m.get(key) is None:
            return None
        try:
            return fn(m[key])
        except ValueError as exc:
            self.error(m, key, f"{key}: {exc}")
            return None

    def keys(self, m: LocDict, allowed: tuple[str, ...], what: str) -> None:
        for key in m:
            if key not in allowed:
                at = m.key_location(key)
                self.errors.append(OutputsError(at.path, at.line, f"unknown key {key!r} in {what} (known: "
                                                f"{', '.join(allowed)})", column=at.column))

    def mapping(self, m: LocDict, key: str) -> LocDict | None:
        value = m.get(key)
        if value is not None and not isinstance(value, LocDict):
            self.error(m, key, f"{key}: expected a mapping")
            return None
        return value

    def strings(self, m: LocDict, key: str) -> tuple[str, ...]:
        value = m.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(m, key, f"{key}: expected a string or a list of strings")
            return ()
        return tuple(value)

    # -- the parts of one entry --------------------------------------------------------------

    def route(self, m: LocDict) -> Route | None:
        r = self.mapping(m, "route")
        if r is None:
            return None
        self.keys(r, ("min_severity", "tags", "owners"), "route")
        severity = self.get(r, "min_severity", str, "a severity") or "info"
        try:
            return Route(severity, self.strings(r, "tags"), self.strings(r, "owners"))
        except ValueError as exc:
            self.error(r, "min_severity", f"min_severity: {exc}")
            return None

    def network(self, m: LocDict, name: str, opts: dict[str, Any], spool_dir: str) -> None:
        s = self.mapping(m, "spool")
        limits = DEFAULT_SPOOL
        directory: str | None = os.path.join(spool_dir, name)
        if s is not None:
            self.keys(s, ("dir", "max_items", "max_mb", "enabled"), "spool")
            items = self.get(s, "max_items", int, "a whole number")
            mb = self.get(s, "max_mb", int, "a whole number")
            if (items is not None and items < 1) or (mb is not None and mb < 1):
                self.error(s, "max_items" if items is not None and items < 1 else "max_mb", "spool limits must be >= 1")
            limits = SpoolLimits(items or limits.events, (mb << 20) if mb else limits.bytes)
            directory = self.get(s, "dir", str, "a directory path") or directory
            if self.get(s, "enabled", bool, "true or false") is False:
                directory = None
        opts.update(spool_dir=directory, spool_limits=limits)
        queue = self.get(m, "queue", int, "a whole number")
        if queue is not None:
            if queue < 1:
                self.error(m, "queue", "queue: must be >= 1")
            opts["queue_max"] = max(1, queue)
        for key, opt in (("timeout", "timeout"), ("close_timeout", "close_timeout")):
            ns = self.convert(m, key, parse_duration)
            if ns is not None:
                opts[opt] = ns / 1e9
        r = self.mapping(m, "retry")
        if r is not None:
            self.keys(r, ("initial", "max"), "retry")
            initial, most = self.convert(r, "initial", parse_duration), self.convert(r, "max", parse_duration)
            base = RetryPolicy()
            opts["retry"] = RetryPolicy(initial / 1e9 if initial else base.initial_s,
                                        most / 1e9 if most else base.max_s)

    def http(self, m: LocDict, opts: dict[str, Any]) -> None:
        headers: dict[str, str] = {}
        path = self.get(m, "headers_file", str, "a file path")
        if path is not None:
            try:
                headers.update(read_headers(path))
            except ValueError as exc:
                self.error(m, "headers_file", str(exc))
        given = self.mapping(m, "headers")
        for key, value in (given or {}).items():
            if not isinstance(value, str | int):
                assert given is not None
                self.error(given, key, f"header {key}: expected a string")
                continue
            headers[key] = str(value)
        if headers:
            opts["headers"] = headers
        t = self.mapping(m, "tls")
        if t is not None:
            self.keys(t, ("ca_file", "cert_file", "key_file", "insecure"), "tls")
            files = {k: self.get(t, k, str, "a file path") for k in ("ca_file", "cert_file", "key_file")}
            for key, value in files.items():
                if value is not None and not os.path.isfile(value):
                    self.error(t, key, f"{key}: no such file {value}")
            if files["key_file"] and not files["cert_file"]:
                self.error(t, "key_file", "key_file needs cert_file")
            tls = TlsOptions(files["ca_file"], files["cert_file"], files["key_file"],
                             bool(self.get(t, "insecure", bool, "true or false")))
            if all(v is None or os.path.isfile(v) for v in files.values()):
                try:
                    tls.context()
                except ValueError as exc:
                    self.error(t, "cert_file" if "client certificate" in str(exc) else "ca_file", f"tls: {exc}")
            opts["tls"] = tls

    def entry(self, m: LocDict, spool_dir: str, seen: set[str]) -> OutputSpec | None:
        kind = self.get(m, "type", str, "an output type")
        if kind is None:
            if "type" not in m:
                self.error(m, None, f"an output needs a type ({', '.join(TYPES)})")
            return None
        if kind not in TYPES:
            self.error(m, "type", f"unknown output type {kind!r} (known: {', '.join(TYPES)})")
            return None
        self.keys(m, (*COMMON, *KEYS[kind], *(NETWORK_KEYS if kind in NETWORK else ())), f"a {kind} output")
        name = self.get(m, "name", str, "a name") or kind
        if not _NAME.match(name):
            self.error(m, "name", f"name {name!r}: use letters, digits, '-' and '_'")
        elif name in seen:
            self.error(m, "name" if "name" in m else "type", f"a second output named {name!r} (give each a name)")
        seen.add(name)
        key = "path" if kind == "ocsf" else "url"
        target = self.get(m, key, str, "a string")
        if target is None:
            if key not in m:
                self.error(m, "type", f"a {kind} output needs {key}")
            return None
        opts: dict[str, Any] = {}
        checks: dict[str, Callable[[Any], Any]] = {"webhook": check_url, "slack": check_url, "otlp": check_url,
                                                   "syslog": parse_target}
        check = checks.get(kind)
        if check is not None and self.convert(m, key, check) is None:
            return None
        if kind in NETWORK:
            self.network(m, name, opts, spool_dir)
        if kind in ("webhook", "slack", "otlp"):
            self.http(m, opts)
        if kind in ("webhook", "slack") and m.get("secret_file") is not None:
            secret = self.convert(m, "secret_file", lambda p: read_secret(str(p)))
            if secret is not None:
                opts["secret"] = secret
        if kind == "syslog":
            facility = self.get(m, "facility", str, "a facility name")
            if facility is not None and facility not in FACILITIES:
                self.error(m, "facility", f"unknown facility {facility!r} (one of {', '.join(FACILITIES)})")
            elif facility is not None:
                opts["facility"] = facility
            hostname = self.get(m, "hostname", str, "a host name")
            if hostname:
                opts["hostname"] = hostname
        if kind == "otlp":
            compression = self.get(m, "compression", str, "gzip or none")
            if compression is not None and compression not in ("gzip", "none"):
                self.error(m, "compression", f"compression must be gzip or none, got {compression!r}")
            elif compression is not None:
                opts["compression"] = compression
            service = self.get(m, "service_name", str, "a string")
            if service:
                opts["service_name"] = service
        return OutputSpec(kind, name, target, opts, self.route(m))


def load_outputs(path: str, spool_root: str) -> list[OutputSpec]:
    """The outputs of the YAML file ``path``; :class:`OutputsLoadError` lists every located problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise OutputsLoadError([OutputsError(path, 0, f"cannot read outputs file: {why}")]) from None
    reader = _Reader(path, spool_root)
    yaml_errors: list[ConfigError] = []
    docs = load_yaml_documents(text, path, yaml_errors)
    reader.errors.extend(OutputsError(e.file, e.line, e.message, column=e.column) for e in yaml_errors)
    if reader.errors:
        raise OutputsLoadError(reader.errors)
    if len(docs) != 1 or not isinstance(docs[0], LocDict):
        raise OutputsLoadError([OutputsError(path, 1, "expected one mapping with an 'outputs' list")])
    top: LocDict = docs[0]
    reader.keys(top, ("outputs", "spool_dir"), "the outputs file")
    spool_dir = reader.get(top, "spool_dir", str, "a directory path") or spool_root
    entries = top.get("outputs")
    specs: list[OutputSpec] = []
    if not isinstance(entries, LocList):
        reader.error(top, "outputs" if "outputs" in top else None, "outputs: expected a list of outputs")
    else:
        seen: set[str] = set()
        for i, m in enumerate(entries):
            if not isinstance(m, LocDict):
                reader.error(entries, i, "an output must be a mapping")
                continue
            spec = reader.entry(m, spool_dir, seen)
            if spec is not None:
                specs.append(spec)
    if reader.errors:
        raise OutputsLoadError(sorted(reader.errors, key=lambda e: (e.line, e.column)))
    return specs


def shortcut_specs(spool_root: str, *, webhook: str | None = None, secret_file: str | None = None,
                   syslog: str | None = None, ocsf_out: str | None = None) -> list[OutputSpec]:
    """The outputs of ``--webhook``/``--webhook-secret-file``, ``--syslog`` and ``--ocsf-out``;
    ValueError (one line) for a bad value."""
    specs: list[OutputSpec] = []
    if secret_file is not None and webhook is None:
        raise ValueError("--webhook-secret-file needs --webhook")
    if webhook is not None:
        check_url(webhook, "--webhook")
        opts: dict[str, Any] = {"spool_dir": os.path.join(spool_root, "webhook"), "spool_limits": DEFAULT_SPOOL}
        if secret_file is not None:
            opts["secret"] = read_secret(secret_file)
        specs.append(OutputSpec("webhook", "webhook", webhook, opts))
    if syslog is not None:
        parse_target(syslog)
        specs.append(OutputSpec("syslog", "syslog", syslog, {"spool_dir": os.path.join(spool_root, "syslog"),
                                                             "spool_limits": DEFAULT_SPOOL}))
    if ocsf_out is not None:
        specs.append(OutputSpec("ocsf", "ocsf", ocsf_out))
    return specs

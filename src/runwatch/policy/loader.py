"""Policy files: YAML in, a validated :class:`~runwatch.policy.model.PolicySet` out.

A file holds one or more YAML documents; each is a mapping with a ``policies`` list, a
bare list of policies, or a single policy mapping. Every problem is collected with its
``file:line:col`` and raised together as one :class:`PolicyLoadError` (nothing half-loaded).
Problems that do not stop a load (a tool pattern that can never apply) are warnings, returned
by :func:`lint_policies`. The format is documented in ``docs/policy.md``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runwatch.config.errors import ConfigError, ConfigLoadError, ConfigWarning, Location
from runwatch.config.values import parse_duration
from runwatch.config.yamlsrc import LocDict, LocList, load_yaml_documents
from runwatch.enrich.governance import parse_review_by
from runwatch.policy.model import (
    FAILS,
    MODES,
    SOCKET_KINDS,
    TOOL_PRECEDENCE,
    EgressRule,
    EgressRules,
    ExecRules,
    FileRules,
    Policy,
    PolicySet,
    ProtectedFile,
    Selector,
    ToolRules,
)


@dataclass(frozen=True, slots=True)
class PolicyError(ConfigError):
    """One located problem in a policy file; ``str()`` is the one-line ``file:line: message``."""

    policy: str | None = None


class PolicyLoadError(ConfigLoadError[PolicyError]):
    """Policies failed to load; ``errors`` holds every located error."""


POLICY_KEYS = ("id", "description", "role", "owner", "escalation", "review_by",
               "selector", "mode", "fail", "challenge_timeout", "tools", "egress", "exec",
               "files")
SELECTOR_KEYS = ("container", "labels", "identity", "pod", "namespace", "process")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST = re.compile(r"^[a-z0-9*?_]([a-z0-9*?_.-]{0,252})$")
_SUFFIXES = (".yaml", ".yml")


def policy_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files named by ``paths``: files as given, directories expanded to their ``*.yaml``/``*.yml``
    (sorted, not recursive). A missing path raises :class:`PolicyLoadError`."""
    out: list[str] = []
    errors: list[PolicyError] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.iterdir()) if f.suffix in _SUFFIXES and f.is_file())
        elif p.exists():
            out.append(str(p))
        else:
            errors.append(PolicyError(str(p), 0, "no such policy file or directory"))
    if errors:
        raise PolicyLoadError(errors)
    return out


class _Load:
    """One load: the errors, the warnings and the ids seen so far."""

    def __init__(self) -> None:
        self.errors: list[PolicyError] = []
        self.warnings: list[ConfigWarning] = []
        self.ids: dict[str, str] = {}  # id -> where first defined

    def err(self, at: Location, message: str, policy: str | None = None) -> None:
        self.errors.append(PolicyError(at.path, at.line, message, policy, column=at.column))

    def warn(self, at: Location, message: str, code: str) -> None:
        self.warnings.append(ConfigWarning(at, message, code))

    # -- small typed readers: each reports and returns None on a bad value -----------------

    def strings(self, d: LocDict, key: str, where: str, *, one_ok: bool = True) -> tuple[str, ...] | None:
        value = d.get(key)
        if isinstance(value, str) and one_ok:
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.err(d.value_location(key), f"{where}: {key} must be a list of non-empty strings")
            return None
        return tuple(v.strip() for v in value)

    def unknown_keys(self, d: LocDict, allowed: Sequence[str], where: str) -> bool:
        ok = True
        for key in d:
            if key not in allowed:
                self.err(d.key_location(key), f"{where}: unknown key {key!r} (known: {', '.join(allowed)})")
                ok = False
        return ok


def parse_egress(text: str) -> EgressRule:
    """Parse ``CIDR[:port]``, ``IP[:port]``, ``[IPv6]:port`` or ``host[:port]`` (port ``*`` = any).

    Raises ValueError with a one-line reason.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty destination")
    addr, port_text = s, None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']'")
        addr, rest = s[1:end], s[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':port' after ']'")
            port_text = rest[1:]
    elif s.count(":") == 1:
        addr, port_text = s.split(":")
    port: int | None = None
    if port_text is not None and port_text != "*":
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{text!r}: port must be 1-65535 or '*', not {port_text!r}")
        port = int(port_text)
    if any(c.isdigit() for c in addr[:1]) or ":" in addr or "/" in addr:
        try:
            net = ipaddress.ip_network(addr, strict=True)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        return EgressRule(text=s, cidr=str(net), port=port)
    host = addr.lower().rstrip(".")
    if not _HOST.match(host) or ".." in host:
        raise ValueError(f"{text!r}: not an IP address, CIDR or host name")
    return EgressRule(text=s, host=host, port=port)


def _abs_patterns(load: _Load, d: LocDict, key: str, where: str) -> tuple[str, ...] | None:
    pats = load.strings(d, key, where)
    if pats is None:
        return None
    bad = [p for p in pats if not (p.startswith("/") or p.startswith("*"))]
    if bad:
        load.err(d.value_location(key), f"{where}: {key}: {bad[0]!r} must be an absolute path or a glob")
        return None
    return pats


def _selector(load: _Load, d: Any, at: Location, where: str) -> Selector | None:
    if not isinstance(d, LocDict):
        load.err(at, f"{where}: selector must be a mapping with one of: {', '.join(SELECTOR_KEYS)}")
        return None
    ok = load.unknown_keys(d, SELECTOR_KEYS, f"{where} selector")
    if not d:
        load.err(d.location, f"{where}: selector is empty (use container: '*' to select every container)")
        return None
    args: dict[str, Any] = {}
    for key in ("container", "identity", "pod", "namespace", "process"):
        if key in d:
            pats = load.strings(d, key, f"{where} selector")
            ok = ok and pats is not None
            args[key] = pats or ()
    if "labels" in d:
        labels = d["labels"]
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str | int | bool)
                                                   for k, v in labels.items()):
            load.err(d.value_location("labels"), f"{where} selector: labels must map names to values")
            ok = False
        else:
            args["labels"] = {k: str(v) for k, v in labels.items()}
    return Selector(**args) if ok else None


def _tools(load: _Load, d: Any, at: Location, where: str) -> ToolRules | None:
    if not isinstance(d, LocDict):
        load.err(at, f"{where}: tools must be a mapping with allow, deny and/or challenge")
        return None
    ok = load.unknown_keys(d, ("allow", "deny", "challenge"), f"{where} tools")
    args: dict[str, Any] = {}
    for key in ("allow", "deny", "challenge"):
        if key in d:
            if d[key] is None or d[key] == []:
                args[key] = ()
                continue
            pats = load.strings(d, key, f"{where} tools")
            ok = ok and pats is not None
            args[key] = pats or ()
    if ok:
        _shadowed_tools(load, d, where)
    return ToolRules(**args) if ok else None


def _shadowed_tools(load: _Load, d: LocDict, where: str) -> None:
    """Warn about a tool pattern written again in a list checked after one that already holds it."""
    seen: dict[str, str] = {}  # pattern -> the first list (in precedence order) that holds it
    for key in TOOL_PRECEDENCE:
        items = d.get(key)
        values = [items] if isinstance(items, str) else items if isinstance(items, list) else []
        for i, pat in enumerate(values):
            first = seen.setdefault(pat.strip(), key)
            if first != key:
                at = items.item_location(i) if isinstance(items, LocList) else d.value_location(key)
                load.warn(at, f"{where} tools: {pat.strip()!r} in {key} never applies ({first} is checked first)",
                          "shadowed-tool")


def _egress(load: _Load, d: Any, at: Location, where: str) -> EgressRules | None:
    if not isinstance(d, LocDict):
        load.err(at, f"{where}: egress must be a mapping with an allow list")
        return None
    ok = load.unknown_keys(d, ("allow", "sockets"), f"{where} egress")
    sockets = d.get("sockets", [])
    if sockets is None:
        sockets = []
    if not isinstance(sockets, list) or any(s not in SOCKET_KINDS for s in sockets):
        load.err(d.value_location("sockets"),
                 f"{where} egress: sockets must be a list of {', '.join(SOCKET_KINDS)}")
        ok = False
        sockets = []
    items = d.get("allow", [])
    if items is None:
        items = []
    if not isinstance(items, list):
        load.err(d.value_location("allow"), f"{where} egress: allow must be a list of destinations")
        return None
    rules: list[EgressRule] = []
    for i, item in enumerate(items):
        item_at = items.item_location(i) if isinstance(items, LocList) else d.value_location("allow")
        if not isinstance(item, str | int):
            load.err(item_at, f"{where} egress: destination must be a string like '10.0.0.0/8:443'")
            ok = False
            continue
        try:
            rules.append(parse_egress(str(item)))
        except ValueError as exc:
            load.err(item_at, f"{where} egress: {exc}")
            ok = False
    return EgressRules(allow=tuple(rules), sockets=tuple(dict.fromkeys(sockets))) if ok else None


def _exec(load: _Load, d: Any, at: Location, where: str) -> ExecRules | None:
    if not isinstance(d, LocDict):
        load.err(at, f"{where}: exec must be a mapping with allow and/or deny")
        return None
    ok = load.unknown_keys(d, ("allow", "deny", "action"), f"{where} exec")
    args: dict[str, Any] = {}
    for key in ("allow", "deny"):
        if key in d:
            pats = () if d[key] in (None, []) else _abs_patterns(load, d, key, f"{where} exec")
            ok = ok and pats is not None
            args[key] = pats or ()
    if "action" in d:
        if d["action"] not in ("deny", "kill"):
            load.err(d.value_location("action"), f"{where} exec: action must be deny or kill, not {d['action']!r}")
            ok = False
        else:
            args["action"] = d["action"]
    return ExecRules(**args) if ok else None


def file_pattern_problem(pattern: str) -> str | None:
    """Why a ``files`` path pattern cannot be enforced (None when it can).

    Enforcers mark directories and files, and event paths are normalised: a pattern needs an
    absolute literal directory before its first wildcard and no ``.``, ``..`` or empty parts.
    """
    if not pattern.startswith("/"):
        return "needs a literal directory before its first wildcard (such as /etc/*.conf)"
    parts = pattern.split("/")[1:]
    if any(p in (".", "..") for p in parts) or any(p == "" for p in parts[:-1]):
        return "must be a normalised absolute path (no '.', '..' or '//')"
    return None


def _check_file_pattern(load: _Load, at: Location, where: str, pattern: str) -> bool:
    problem = file_pattern_problem(pattern)
    if problem is not None:
        load.err(at, f"{where}: {pattern!r} {problem}")
    return problem is None


def _files(load: _Load, d: Any, at: Location, where: str) -> FileRules | None:
    if not isinstance(d, LocDict):
        load.err(at, f"{where}: files must be a mapping with protect and/or immutable")
        return None
    ok = load.unknown_keys(d, ("protect", "immutable"), f"{where} files")
    protect: list[ProtectedFile] = []
    sources: list[tuple[str, str]] = []
    items = d.get("protect", [])
    if not isinstance(items, list):
        load.err(d.value_location("protect"), f"{where} files: protect must be a list of {{path, readers}}")
        ok, items = False, []
    for i, item in enumerate(items):
        item_at = items.item_location(i) if isinstance(items, LocList) else d.value_location("protect")
        if not isinstance(item, LocDict):
            load.err(item_at, f"{where} files: protect entry must be a mapping with path and readers")
            ok = False
            continue
        ok = load.unknown_keys(item, ("path", "readers"), f"{where} files.protect") and ok
        path = item.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            load.err(item.value_location("path"), f"{where} files.protect: path must be an absolute path")
            ok = False
            continue
        path_at = item.value_location("path")
        if not _check_file_pattern(load, path_at, f"{where} files.protect", path):
            ok = False
            continue
        sources.append((f"files.protect:{path}", f"{path_at.path}:{path_at.line}"))
        readers: tuple[str, ...] | None = ()
        if item.get("readers") not in (None, []):
            readers = _abs_patterns(load, item, "readers", f"{where} files.protect {path}")
        if readers is None:
            ok = False
            continue
        protect.append(ProtectedFile(path=path, readers=readers))
    immutable: tuple[str, ...] | None = ()
    if d.get("immutable") not in (None, []):
        immutable = _abs_patterns(load, d, "immutable", f"{where} files")
    if immutable is None:
        ok = False
    raw = d.get("immutable")
    for i, pattern in enumerate(immutable or ()):
        item_at = raw.item_location(i) if isinstance(raw, LocList) else d.value_location("immutable")
        ok = _check_file_pattern(load, item_at, f"{where} files.immutable", pattern) and ok
        sources.append((f"files.immutable:{pattern}", f"{item_at.path}:{item_at.line}"))
    return FileRules(protect=tuple(protect), immutable=immutable or (), sources=tuple(sources)) if ok else None


_OPTIONAL = ("description", "role", "owner", "escalation", "review_by")


def _governance(load: _Load, d: LocDict, where: str, pid: str, args: dict[str, Any]) -> None:
    """The policy's ``owner``, ``escalation`` (non-empty strings) and ``review_by`` (an ISO date)."""
    for key in ("owner", "escalation"):
        if key in d:
            v = d[key]
            if not isinstance(v, str) or not v.strip() or "\n" in v.strip():
                load.err(d.value_location(key), f"{where}: {key} must be a one-line name or address, not {v!r}", pid)
            else:
                args[key] = v.strip()
    if "review_by" in d:
        try:
            args["review_by"] = parse_review_by(d["review_by"])
        except ValueError as exc:
            load.err(d.value_location("review_by"), f"{where}: {exc}", pid)


def _policy(load: _Load, file: str, d: LocDict) -> Policy | None:
    pid = d.get("id")
    if not isinstance(pid, str) or not _ID.match(pid):
        load.err(d.value_location("id") if "id" in d else d.location,
                 "policy needs an id (letters, digits, '_', '.', ':', '-'; at most 128)")
        return None
    where = f"policy {pid!r}"
    if pid in load.ids:
        load.err(d.value_location("id"), f"{where}: duplicate id (first defined at {load.ids[pid]})", pid)
        return None
    load.ids[pid] = f"{file}:{d.line}"
    n_before = len(load.errors)
    load.unknown_keys(d, POLICY_KEYS, where)
    args: dict[str, Any] = {"id": pid, "source": f"{file}:{d.line}"}
    if "selector" not in d:
        load.err(d.location, f"{where}: selector is required", pid)
    else:
        args["selector"] = _selector(load, d["selector"], d.value_location("selector"), where)
    for key, allowed in (("mode", MODES), ("fail", FAILS)):
        if key in d:
            if d[key] not in allowed:
                load.err(d.value_location(key), f"{where}: {key} must be {' or '.join(allowed)}, not {d[key]!r}", pid)
            else:
                args[key] = d[key]
    if "challenge_timeout" in d:
        try:
            ns = parse_duration(d["challenge_timeout"])
            if ns <= 0:
                raise ValueError(f"challenge_timeout must be positive, not {d['challenge_timeout']!r}")
            args["challenge_timeout_ns"] = ns
        except ValueError as exc:
            load.err(d.value_location("challenge_timeout"), f"{where}: {exc}", pid)
    if "description" in d:
        if not isinstance(d["description"], str):
            load.err(d.value_location("description"), f"{where}: description must be a string", pid)
        else:
            args["description"] = d["description"].strip()
    if "role" in d:
        if not isinstance(d["role"], str) or not _ROLE.match(d["role"]):
            load.err(d.value_location("role"), f"{where}: role must be a word such as model-server or agent "
                     f"(letters, digits, '.', '_', '-'), not {d['role']!r}", pid)
        else:
            args["role"] = d["role"]
    _governance(load, d, where, pid, args)
    for key, reader in (("tools", _tools), ("egress", _egress), ("exec", _exec), ("files", _files)):
        if key in d:
            args[key] = reader(load, d[key], d.value_location(key), where)
    for e in load.errors[n_before:]:
        if e.policy is None:
            load.errors[load.errors.index(e)] = dataclasses.replace(e, policy=pid)
    if len(load.errors) > n_before or any(v is None for k, v in args.items() if k not in _OPTIONAL):
        return None
    return Policy(**args)


def _documents(load: _Load, text: str, file: str) -> list[Policy]:
    yaml_errors: list[ConfigError] = []
    docs = load_yaml_documents(text, file, yaml_errors)
    load.errors.extend(PolicyError(e.file, e.line, e.message, column=e.column) for e in yaml_errors)
    out: list[Policy] = []
    for doc in docs:
        if doc is None:
            continue
        if isinstance(doc, LocDict) and "policies" in doc:
            extra = [k for k in doc if k != "policies"]
            for k in extra:
                load.err(doc.key_location(k), f"unknown top-level key {k!r} (only 'policies')")
            entries = doc["policies"]
            if not isinstance(entries, LocList):
                load.err(doc.value_location("policies"), "policies must be a list of policy mappings")
                continue
        elif isinstance(doc, LocDict):
            entries = LocList.of([doc], file, doc.line, doc.column)
        elif isinstance(doc, LocList):
            entries = doc
        else:
            load.err(Location(file, 1), "a policy file holds a 'policies' list, a list of policies or one policy")
            continue
        for i, entry in enumerate(entries):
            if not isinstance(entry, LocDict):
                load.err(entries.item_location(i), "a policy must be a mapping (id, selector, ...)")
                continue
            policy = _policy(load, file, entry)
            if policy is not None:
                out.append(policy)
    return out


def _load_texts(texts: Iterable[tuple[str, str]]) -> tuple[PolicySet, _Load]:
    """The policies that loaded and the load's errors and warnings, each sorted in file order."""
    load = _Load()
    policies: list[Policy] = []
    names: list[str] = []
    for text, source in texts:
        names.append(source)
        policies.extend(_documents(load, text, source))
    order = {name: i for i, name in enumerate(names)}
    load.errors.sort(key=lambda e: (order.get(e.file, -1), e.line))
    load.warnings.sort(key=lambda w: (order.get(w.file, -1), w.location.line, w.location.column))
    return PolicySet(tuple(policies), tuple(names)), load


def load_policy_texts(texts: Iterable[tuple[str, str]]) -> PolicySet:
    """Load policies from ``(text, source name)`` pairs; raises :class:`PolicyLoadError`."""
    policies, load = _load_texts(texts)
    if load.errors:
        raise PolicyLoadError(load.errors)
    return policies


def _read_files(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(text, file)`` of every policy file named; raises :class:`PolicyLoadError` for one missing or unreadable."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    texts: list[tuple[str, str]] = []
    errors: list[PolicyError] = []
    for f in policy_files(paths):
        try:
            texts.append((Path(f).read_text(encoding="utf-8"), f))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(PolicyError(f, 0, f"cannot read: {exc}"))
    if errors:
        raise PolicyLoadError(errors)
    return texts


def load_policies(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> PolicySet:
    """Load policy files and directories (``*.yaml``/``*.yml``) in order.

    Raises :class:`PolicyLoadError` carrying every located error of every file.
    """
    return load_policy_texts(_read_files(paths))


def lint_policies(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[PolicyError], list[ConfigWarning]]:
    """Every located error and every warning of the given files, each in file order."""
    try:
        texts = _read_files(paths)
    except PolicyLoadError as exc:
        return exc.errors, []
    _, load = _load_texts(texts)
    return load.errors, load.warnings


def check_policies(paths: Iterable[str | os.PathLike[str]]) -> list[PolicyError]:
    """Every located error of the given files (empty when they load)."""
    return lint_policies(paths)[0]

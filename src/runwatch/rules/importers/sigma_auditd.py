"""Sigma ``service: auditd`` rules onto runwatch events.

An auditd rule selects audit records by ``type``; each maps onto the runwatch events that
report the same thing:

* ``EXECVE`` (the argument vector of an exec): ``kind = process.exec``; ``a0``, ``a1``, ...
  are ``proc.argv[0]``, ``proc.argv[1]``, ... (``a0`` is argv[0] as passed to execve in both);
  keywords (values without a field) searched in an EXECVE record search its arguments:
  ``proc.cmdline icontains``.
* ``SYSCALL``: with ``SYSCALL: NAME``, the kind that reports that system call (the event
  table's syscalls; a name runwatch never reports can never match); without one, the record
  only names the process (``exe``, ``comm``, ``uid``, ...) that made an audited call, and
  maps onto that process's ``process.exec``. SYSCALL ``a0``..``a3`` are raw register values
  runwatch does not report.
* ``PATH`` (a path a system call used): the file kinds, ``name`` is ``file.path``;
  ``nametype: CREATE`` is an open for writing (as Sigma's ``file_event`` category).
* any other record type (``TTY``, ``ADD_USER``, ``SERVICE_STOP``, ...): runwatch has no such
  event, so a selection of it can never match (and drops out of an ``or``).

A selection without ``type`` takes the record type its fields imply (``aN`` EXECVE, ``name``
PATH, ``exe``/``comm``/``SYSCALL`` SYSCALL). Fields without a counterpart become
``__unmapped__FIELD`` placeholders and record types without events ``__never__`` ones,
settled by :mod:`runwatch.rules.importers.sigma_fold`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sigma.conditions import ConditionAND
from sigma.correlations import SigmaCorrelationRule
from sigma.processing.transformations.base import PreprocessingTransformation
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaNumber, SigmaString

from runwatch import eventkinds
from runwatch.rules.importers.sigma_fold import NEVER, UNMAPPED

EXEC_KIND = "process.exec"
#: The runwatch kinds a PATH record can stand for (their ``file.path`` is the path used).
PATH_KINDS = ("file.open", "file.unlink", "file.rename", "file.chmod", "file.mkdir", "file.rmdir", "file.link")

#: Fields of a record type -> the runwatch field (``aN`` handled apart).
_PROCESS_FIELDS = {"exe": "proc.exe", "comm": "proc.comm", "uid": "proc.uid", "euid": "proc.euid",
                   "gid": "proc.gid", "pid": "proc.pid", "ppid": "proc.ppid", "cwd": "proc.cwd"}
_FIELDS: dict[str, dict[str, str]] = {
    "EXECVE": dict(_PROCESS_FIELDS),
    "SYSCALL": dict(_PROCESS_FIELDS),
    "PATH": {**_PROCESS_FIELDS, "name": "file.path"},
}
#: Why an auditd field has no counterpart (shown in the skip reason or the warning).
UNMAPPED_WHY: dict[str, str] = {
    "key": "audit rule keys name rules of the local auditd configuration",
    "unit": "runwatch does not observe systemd units",
    "auid": "runwatch events carry no login uid",
    "nametype": "runwatch tells an open for writing (CREATE) apart, not other PATH name types",
    "SYSCALL.aN": "SYSCALL a0..a3 are raw system call arguments, which runwatch does not report",
}
#: What a ``__never__`` placeholder stands for (the value is the record type or the call's name).
NEVER_RECORD = "auditd {} records"
NEVER_SYSCALL = "system call {}"
_NEVER_TEXT = re.compile(r"^(?:auditd (\S+) records|system call (\S+))$")
_ARG = re.compile(r"^a(\d+)$")
_ARG_TYPE = "EXECVE"
_TYPE_OF_FIELD = {"name": "PATH", "nametype": "PATH", "SYSCALL": "SYSCALL", "exe": "SYSCALL", "comm": "SYSCALL"}


def _text(v: Any) -> str:
    return str(v.number) if isinstance(v, SigmaNumber) else str(v)


def _strings(values: list[str]) -> list[Any]:
    return [SigmaString(v) for v in values]


@dataclass
class AuditdRecords(PreprocessingTransformation):
    """Rewrites every detection of an auditd rule into runwatch fields (module docstring)."""

    def apply(self, rule: SigmaRule | SigmaCorrelationRule) -> None:
        """Rewrite the rule's detections in place."""
        super().apply(rule)
        if not isinstance(rule, SigmaRule):
            return
        typed = {_text(v).upper() for det in rule.detection.detections.values() for v in _type_values(det)}
        for det in rule.detection.detections.values():
            self._detection(det, typed)

    def _detection(self, det: SigmaDetection, rule_types: set[str]) -> None:
        items = det.detection_items
        subs = [i for i in items if isinstance(i, SigmaDetection)]
        for sub in subs:
            self._detection(sub, rule_types)
        plain = [i for i in items if isinstance(i, SigmaDetectionItem)]
        if not plain:
            return
        if all(i.field is None for i in plain):
            for i in plain:
                self._keyword(i, rule_types)
            return
        own = [i for i in plain if i.field == "type"]
        syscall = next((i for i in plain if i.field == "SYSCALL"), None)
        if own:
            types = {_text(v).upper() for i in own for v in i.value}
        else:
            implied = {_ARG_TYPE if _ARG.match(i.field or "") else _TYPE_OF_FIELD.get(i.field or "", "")
                       for i in plain} - {""}
            types = implied if len(implied) == 1 else set()
        if syscall is not None and own:  # the SYSCALL item gives the kind; `type: SYSCALL` adds nothing
            det.detection_items = [i for i in items if not (isinstance(i, SigmaDetectionItem) and i.field == "type")]
            items = det.detection_items
            plain = [i for i in plain if i.field != "type"]
        for item in plain:
            self._item(item, types, syscall is not None)
        if not own and not rule_types and types and det.item_linking is ConditionAND:
            # a rule without any `type`: the kind term of the record type its fields imply
            kind = self._kind_item(types, syscall is not None)
            if kind is not None:
                items.append(kind)

    def _kind_item(self, types: set[str], has_syscall: bool) -> SigmaDetectionItem | None:
        kinds: list[str] = []
        never: list[str] = []
        for t in sorted(types):
            if t == "EXECVE" or (t == "SYSCALL" and not has_syscall):
                kinds.append(EXEC_KIND)
            elif t == "PATH":
                kinds.extend(PATH_KINDS)
            elif t != "SYSCALL":
                never.append(NEVER_RECORD.format(t))
        if kinds:
            return SigmaDetectionItem("kind", [], _strings(sorted(set(kinds))))
        if never:
            return SigmaDetectionItem(NEVER, [], _strings(never))
        return None  # SYSCALL with a SYSCALL item: that item gives the kind

    def _item(self, item: SigmaDetectionItem, types: set[str], has_syscall: bool) -> None:
        f = item.field or ""
        if f == "type":
            kind = self._kind_item(types, has_syscall)
            if kind is None:
                kind = SigmaDetectionItem(NEVER, [], _strings(["auditd SYSCALL records without a system call"]))
            item.field, item.value, item.modifiers = kind.field, kind.value, []
            return
        if f == "SYSCALL":
            by_call = eventkinds.syscall_kinds()
            names = [_text(v).lower() for v in item.value]
            kinds = sorted({by_call[n] for n in names if n in by_call})
            if kinds:
                item.field, item.value = "kind", _strings(kinds)
            else:
                item.field, item.value = NEVER, _strings([NEVER_SYSCALL.format(n) for n in names])
            item.modifiers = []
            return
        m = _ARG.match(f)
        if m is not None:
            if "SYSCALL" in types and "EXECVE" not in types:
                item.field = f"{UNMAPPED}SYSCALL.{f}"
            else:
                item.field = f"proc.argv[{m.group(1)}]"
                item.value = [SigmaString(_text(v)) if isinstance(v, SigmaNumber) else v for v in item.value]
            return
        if f == "nametype":
            vals = {_text(v).upper() for v in item.value}
            if vals == {"CREATE"}:
                item.field, item.value, item.modifiers = "file.intent", _strings(["rw", "write"]), []
            else:
                item.field = f"{UNMAPPED}nametype"
            return
        for t in sorted(types) or ["EXECVE", "SYSCALL", "PATH"]:
            target = _FIELDS.get(t, {}).get(f)
            if target is not None:
                item.field = target
                return
        item.field = f"{UNMAPPED}{f}"

    def _keyword(self, item: SigmaDetectionItem, rule_types: set[str]) -> None:
        if rule_types != {"EXECVE"}:
            item.field = f"{UNMAPPED}keywords"
            return
        item.field = "proc.cmdline"
        star = SigmaString("*")
        item.value = [star + (v if isinstance(v, SigmaString) else SigmaString(_text(v))) + star for v in item.value]



def _type_values(det: SigmaDetection) -> list[Any]:
    out: list[Any] = []
    for i in det.detection_items:
        if isinstance(i, SigmaDetection):
            out.extend(_type_values(i))
        elif i.field == "type":
            out.extend(i.value)
    return out


def never_value(text: str) -> str:
    """The Sigma value a ``__never__`` text names (``TTY``, ``mknod``), ``""`` for any other text."""
    m = _NEVER_TEXT.match(text)
    return (m.group(1) or m.group(2)) if m is not None else ""


def why(field: str) -> str:
    """`` (reason)`` for an auditd field without a counterpart, else ``""``."""
    key = "SYSCALL.aN" if field.startswith("SYSCALL.a") else field
    return f" ({UNMAPPED_WHY[key]})" if key in UNMAPPED_WHY else ""


__all__ = ["EXEC_KIND", "PATH_KINDS", "UNMAPPED_WHY", "AuditdRecords", "why"]

"""Sigma (SigmaHQ Linux) rules to runwatch rules, through a pySigma backend.

:class:`RunwatchBackend` is a pySigma ``TextQueryBackend`` that writes runwatch condition
syntax; :func:`runwatch_pipeline` is the processing pipeline that checks the log source,
maps Sigma's Sysmon-for-Linux field names to runwatch fields and fails, with a reason
naming the field, on anything runwatch cannot observe. :func:`import_sigma_text` turns one
rule file into :class:`ImportedRule` records.

Semantics kept from Sigma: ``contains`` is case-insensitive (``icontains``); ``|cased``
makes it exact. Equality, prefixes, suffixes and wildcard (glob) matches are exact-case
(runwatch has no case-insensitive form of them; Linux paths are case-sensitive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml
from sigma.conditions import ConditionAND, ConditionItem, ConditionNOT, ConditionOR
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaFeatureNotSupportedByBackendError, SigmaTransformationError
from sigma.policy import SigmaPolicy
from sigma.policy.regex_engine import RE2RegexEngine, RegexPattern
from sigma.processing.conditions import IncludeFieldCondition, LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldMappingTransformation
from sigma.processing.transformations.base import DetectionItemTransformation, PreprocessingTransformation
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from runwatch.rules.compiler import CompileError, Compiler
from runwatch.rules.importers.report import NIST_HOST, NIST_NET, ImportedRule, attack_id, one_line, slug
from runwatch.rules.importers.sigma_auditd import AuditdRecords, never_value
from runwatch.rules.importers.sigma_auditd import why as auditd_why
from runwatch.rules.importers.sigma_fold import UNMAPPED, fold
from runwatch.rules.language import ConditionError, parse_condition
from runwatch.rules.regex import compile_quiet

DRL = "Detection Rule License (DRL) 1.1, https://github.com/SigmaHQ/Detection-Rule-License"

#: Supported ``logsource.category`` (product linux) -> the runwatch kind term of the rule.
KIND_TERMS: dict[str, str] = {
    "process_creation": "kind = process.exec",
    "file_event": "kind = file.open and file.intent in (write, rw)",
    "file_change": "kind = file.open and file.intent in (write, rw)",
    "file_access": "kind = file.open",
    "file_delete": "kind = file.unlink",
    "network_connection": "kind in (net.connect, net.accept)",
}

_PROC = {"Image": "proc.exe", "User": "proc.uid", "ProcessId": "proc.pid"}
#: Sigma field -> runwatch field, per supported category.
FIELD_MAPS: dict[str, dict[str, str]] = {
    "process_creation": {**_PROC, "CommandLine": "proc.cmdline", "ParentImage": "proc.pexe",
                         "ParentCommandLine": "proc.pcmdline",
                         "CurrentDirectory": "proc.cwd", "ParentProcessId": "proc.ppid"},
    "file_event": {**_PROC, "TargetFilename": "file.path"},
    "file_change": {**_PROC, "TargetFilename": "file.path"},
    "file_access": {**_PROC, "TargetFilename": "file.path"},
    "file_delete": {**_PROC, "TargetFilename": "file.path"},
    "network_connection": {**_PROC, "DestinationIp": "net.dst.ip", "DestinationPort": "net.dst.port",
                           "SourceIp": "net.src.ip", "SourcePort": "net.src.port", "Protocol": "net.proto",
                           "Initiated": "kind", "DestinationHostname": "net.dst.name"},
}
#: Supported ``logsource.service`` values (product linux, no category): mapped record by record.
SERVICES = ("auditd",)
#: Why a known Sigma field has no runwatch counterpart (shown in the skip reason).
UNMAPPED_WHY: dict[str, str] = {
    "SourceHostname": "runwatch connection events carry addresses, not host names",
    "LogonId": "runwatch events carry no login session id",
    "OriginalFileName": "PE version metadata does not exist on Linux",
    "Hashes": "runwatch does not hash executables",
    "CommandLine": "this event kind has no command line in runwatch",
    "ParentUser": "runwatch events carry no parent user",
}
_KIND_OF_INITIATED = {"true": "net.connect", "false": "net.accept"}


class QuietRE2Engine(RE2RegexEngine):
    """pySigma's RE2 engine (its default) without RE2's error log on standard error.

    A pattern RE2 refuses still raises; the error becomes the rule's skip reason.
    """

    _FLAGS: ClassVar[dict[int, str]] = {re.IGNORECASE: "i", re.MULTILINE: "m", re.DOTALL: "s"}

    def compile(self, pattern: str, flags: int = 0) -> RegexPattern:
        """Compile ``pattern`` with Python ``re`` flags written as RE2 inline flags."""
        prefix = "".join(v for k, v in self._FLAGS.items() if int(flags) & k)
        try:
            compiled: RegexPattern = compile_quiet(f"(?{prefix}){pattern}" if prefix else pattern)
        except self.error as exc:  # RE2 gives its message as bytes: make it text for the skip reason
            why = exc.args[0] if exc.args else exc
            raise self.error(why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)) from None
        return compiled


#: The policy rules are parsed under: pySigma's safe defaults, quiet RE2.
POLICY = SigmaPolicy(regex_engine=QuietRE2Engine())


def _why(field: str) -> str:
    return f" ({UNMAPPED_WHY[field]})" if field in UNMAPPED_WHY else ""


@dataclass
class RequireLinuxLogsource(PreprocessingTransformation):
    """Fails a rule whose log source runwatch does not observe, naming that log source."""

    def apply(self, rule: SigmaRule | SigmaCorrelationRule) -> None:
        """Raise for correlation rules and unsupported log sources."""
        super().apply(rule)
        if not isinstance(rule, SigmaRule):
            raise SigmaTransformationError("correlation rules are not supported")
        ls = rule.logsource
        if ls.product != "linux" or (ls.category not in KIND_TERMS
                                     and (ls.category is not None or ls.service not in SERVICES)):
            parts = [f"{k} {v}" for k, v in (("product", ls.product), ("category", ls.category),
                                             ("service", ls.service)) if v]
            raise SigmaTransformationError(f"unsupported logsource {', '.join(parts) or 'none'}"
                                           f" (supported: linux {', '.join(KIND_TERMS)}; linux service "
                                           f"{', '.join(SERVICES)})")


@dataclass
class MarkUnmappedFields(DetectionItemTransformation):
    """Fails on a keyword (field-less) item; renames a field outside ``fields`` to its placeholder.

    The placeholder (``__unmapped__FIELD``) is settled after conversion
    (:mod:`runwatch.rules.importers.sigma_fold`): in a filter it drops that filter, anywhere
    else the rule is skipped naming the field.
    """

    fields: list[str]

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> SigmaDetectionItem | None:
        """Raise for a keyword item; mark an unmapped field; leave mapped items alone."""
        f = detection_item.field
        if f is None:
            raise SigmaTransformationError("keyword search (values without a field) is not supported")
        if f not in self.fields:
            detection_item.field = f"{UNMAPPED}{f}"
        return None


@dataclass
class UserToUid(DetectionItemTransformation):
    """``User: root`` -> uid 0; numeric users stay numbers; other user names fail (no name lookup)."""

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> SigmaDetectionItem | None:
        """Rewrite the values of a ``User`` item to uid numbers."""
        out: list[Any] = []
        for v in detection_item.value:
            text = str(v).strip() if isinstance(v, SigmaString | SigmaNumber) else None
            if text == "root":
                out.append(SigmaNumber(0))
            elif text is not None and text.isdigit():
                out.append(SigmaNumber(int(text)))
            else:
                raise SigmaTransformationError(f"User value {v!s} is a name; runwatch matches numeric uids "
                                               "(only root maps, to 0)")
        detection_item.value = out
        return None


@dataclass
class InitiatedToKind(DetectionItemTransformation):
    """``Initiated: 'true'`` -> ``kind = net.connect``; ``'false'`` -> ``kind = net.accept``."""

    def apply_detection_item(self, detection_item: SigmaDetectionItem) -> SigmaDetectionItem | None:
        """Rewrite the values of an ``Initiated`` item to event kinds."""
        out: list[Any] = []
        for v in detection_item.value:
            key = str(v.boolean).lower() if isinstance(v, SigmaBool) else str(v).strip().lower()
            if key not in _KIND_OF_INITIATED:
                raise SigmaTransformationError(f"Initiated value {v!s} is not true or false")
            out.append(SigmaString(_KIND_OF_INITIATED[key]))
        detection_item.value = out
        return None


def runwatch_pipeline() -> ProcessingPipeline:
    """The Sigma -> runwatch processing pipeline (log source check, value rewrites, field mapping)."""
    items: list[ProcessingItem] = [
        ProcessingItem(RequireLinuxLogsource(), identifier="runwatch_logsource"),
        ProcessingItem(AuditdRecords(), identifier="runwatch_auditd",
                       rule_conditions=[LogsourceCondition(product="linux", service="auditd")]),
        ProcessingItem(UserToUid(), identifier="runwatch_user_uid",
                       field_name_conditions=[IncludeFieldCondition(["User"])]),
        ProcessingItem(InitiatedToKind(), identifier="runwatch_initiated_kind",
                       field_name_conditions=[IncludeFieldCondition(["Initiated"])]),
    ]
    for cat, fmap in FIELD_MAPS.items():
        # each item gets its own condition objects (pySigma binds a condition to one pipeline)
        items.append(ProcessingItem(MarkUnmappedFields(list(fmap)),
                                    rule_conditions=[LogsourceCondition(category=cat, product="linux")],
                                    identifier=f"runwatch_unmapped_{cat}"))
        mapping: dict[str | None, str | list[str]] = {k: v for k, v in fmap.items()}
        items.append(ProcessingItem(FieldMappingTransformation(mapping),
                                    rule_conditions=[LogsourceCondition(category=cat, product="linux")],
                                    identifier=f"runwatch_fields_{cat}"))
    return ProcessingPipeline(items=items, name="runwatch", priority=20)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_GLOB_LITERAL = {"*": "[*]", "?": "[?]", "[": "[[]"}


class RunwatchBackend(TextQueryBackend):
    """A pySigma backend writing runwatch rule conditions (docs/rules.md syntax)."""

    name: ClassVar[str] = "runwatch"
    formats: ClassVar[dict[str, str]] = {"default": "runwatch condition"}
    requires_pipeline: ClassVar[bool] = False

    precedence: ClassVar[tuple[type[ConditionItem], type[ConditionItem], type[ConditionItem]]] = (
        ConditionNOT, ConditionAND, ConditionOR)
    group_expression: ClassVar[str] = "({expr})"
    or_token: ClassVar[str] = "or"
    and_token: ClassVar[str] = "and"
    not_token: ClassVar[str] = "not"
    eq_token: ClassVar[str] = " = "
    str_quote: ClassVar[str] = '"'
    escape_char: ClassVar[str] = "\\"
    wildcard_multi: ClassVar[str] = "*"
    wildcard_single: ClassVar[str] = "?"
    bool_values: ClassVar[dict[bool, str | None]] = {True: "true", False: "false"}

    startswith_expression: ClassVar[str] = "{field} startswith {value}"
    endswith_expression: ClassVar[str] = "{field} endswith {value}"
    contains_expression: ClassVar[str] = "{field} icontains {value}"
    wildcard_match_expression: ClassVar[str] = "{field} glob {value}"
    case_sensitive_match_expression: ClassVar[str] = "{field} glob {value}"  # only with inner wildcards
    case_sensitive_startswith_expression: ClassVar[str] = "{field} startswith {value}"
    case_sensitive_endswith_expression: ClassVar[str] = "{field} endswith {value}"
    case_sensitive_contains_expression: ClassVar[str] = "{field} contains {value}"
    cidr_expression: ClassVar[str] = '{field} cidr "{value}"'
    compare_op_expression: ClassVar[str] = "{field} {operator} {value}"
    compare_operators: ClassVar[dict[CompareOperators, str]] = {
        CompareOperators.LT: "<", CompareOperators.LTE: "<=", CompareOperators.GT: ">",
        CompareOperators.GTE: ">=", CompareOperators.NEQ: "!=",
    }
    field_null_expression: ClassVar[str] = "not {field} exists"
    field_exists_expression: ClassVar[str] = "{field} exists"
    field_not_exists_expression: ClassVar[str] = "not {field} exists"
    convert_or_as_in: ClassVar[bool] = True
    convert_and_as_in: ClassVar[bool] = False
    in_expressions_allow_wildcards: ClassVar[bool] = False
    field_in_list_expression: ClassVar[str] = "{field} {op} ({list})"
    or_in_operator: ClassVar[str] = "in"
    list_separator: ClassVar[str] = ", "

    def convert_value_str(self, s: SigmaString, state: ConversionState) -> str:
        """A quoted runwatch string; with wildcards, a glob whose literal ``* ? [`` are bracketed."""
        if not s.contains_special():
            return _quote("".join(p for p in s.s if isinstance(p, str)))
        out: list[str] = []
        for part in s.s:
            if part == SpecialChars.WILDCARD_MULTI:
                out.append("*")
            elif part == SpecialChars.WILDCARD_SINGLE:
                out.append("?")
            elif isinstance(part, str):
                out.append("".join(_GLOB_LITERAL.get(ch, ch) for ch in part))
            else:
                raise SigmaFeatureNotSupportedByBackendError("placeholders are not supported")
        return _quote("".join(out))

    def convert_condition_field_eq_val_str_case_sensitive(self, cond: Any, state: ConversionState) -> Any:
        """``|cased`` values: exact ``=`` without wildcards, else as pySigma decides (affix or glob)."""
        value = cond.value
        if isinstance(value, SigmaString) and not value.contains_special():
            return f"{cond.field} = {self.convert_value_str(value, state)}"
        return super().convert_condition_field_eq_val_str_case_sensitive(cond, state)

    def convert_condition_field_eq_val_re(self, cond: Any, state: ConversionState) -> Any:
        """``|re`` (with ``|i``, ``|m``, ``|s`` as inline flags) -> ``regex``: RE2, a search like Sigma's."""
        value: SigmaRegularExpression = cond.value
        flags = "".join(sorted(SigmaRegularExpression.sigma_to_re_flag[f] for f in value.flags))
        pattern = (f"(?{flags})" if flags else "") + str(value.regexp)
        return f"{cond.field} regex {_quote(pattern)}"

    def convert_condition_field_eq_field(self, cond: Any, state: ConversionState) -> Any:
        """Field-to-field comparison has no runwatch form."""
        raise SigmaFeatureNotSupportedByBackendError(f"field reference (|fieldref) on {cond.field} is not supported")

    def convert_condition_val_str(self, cond: Any, state: ConversionState) -> Any:
        """Keyword search has no runwatch form."""
        raise SigmaFeatureNotSupportedByBackendError("keyword search (values without a field) is not supported")

    convert_condition_val_num = convert_condition_val_str
    convert_condition_val_re = convert_condition_val_str


def _ts(value: Any) -> str:
    return "" if value is None else str(value)


def _locate(text: str, message: str) -> int:
    """The first line of ``text`` holding a quoted token of ``message`` (a modifier, a field), else 1."""
    for token in re.findall(r"'([^']+)'|\b([A-Za-z_][A-Za-z0-9_]*)\b", message):
        word = token[0] or token[1]
        if len(word) < 3:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            if re.search(rf"[|\s]{re.escape(word)}\b", line) or (token[0] and f"'{word}'" in line):
                return i
    return 1


def _value_line(text: str, value: str) -> int:
    """The first line holding ``value`` as a YAML value (``key: value``, ``- 'value'``), else 1."""
    if value:
        v = re.escape(value)
        for i, line in enumerate(text.splitlines(), 1):
            if re.search(rf"(?:^\s*-|:)\s*['\"]?{v}['\"]?\s*(?:#.*)?$", line, re.IGNORECASE):
                return i
    return 1


def _field_line(text: str, field: str) -> int:
    """The first line where ``field`` is a detection key (``field:``, ``field|mod:``, ``- field:``), else 1.

    ``SYSCALL.a0`` (an argument of a SYSCALL record) is looked up as ``a0``.
    """
    key = re.escape(field.rpartition(".")[2] if field.startswith("SYSCALL.") else field)
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*(?:-\s*)?['\"]?{key}['\"]?\s*[|:]", line):
            return i
    return 1


def _rule_line(text: str) -> int:
    """The line of the ``title:`` key (the rule's start), else 1."""
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("title:"):
            return i
    return 1


class SigmaImporter:
    """Converts Sigma rule files; one backend and pipeline are built and reused.

    Not thread-safe (pySigma backends keep per-conversion state).
    """

    def __init__(self) -> None:
        self.backend = RunwatchBackend(runwatch_pipeline())

    def import_text(self, text: str, file: str) -> list[ImportedRule]:
        """Every rule in one Sigma file (several ``---`` documents allowed) as records."""
        stem = Path(file).stem
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            rec = ImportedRule(slug("sigma.", stem), stem, "sigma", file, line)
            rec.skip(f"{file}:{line}: YAML syntax error: {problem}")
            return [rec]
        out: list[ImportedRule] = []
        for i, doc in enumerate(docs):
            name = slug("sigma.", stem if i == 0 else f"{stem}_{i + 1}")
            out.append(self.convert_doc(doc, text, file, name))
        return out

    def convert_doc(self, doc: Any, text: str, file: str, name: str) -> ImportedRule:
        """One parsed Sigma document to one record."""
        line = _rule_line(text)
        title = str(doc.get("title", name)) if isinstance(doc, dict) else name
        rec = ImportedRule(name, one_line(title), "sigma", file, line)
        if not isinstance(doc, dict):
            rec.skip(f"{file}:1: a Sigma rule must be a YAML mapping")
            return rec
        try:
            rule = SigmaRule.from_dict(doc, collect_errors=True, policy=POLICY)
        except SigmaError as exc:
            rec.skip(f"{file}:{_locate(text, str(exc))}: {exc}")
            return rec
        if rule.errors:
            err = rule.errors[0]
            rec.skip(f"{file}:{_locate(text, str(err))}: {one_line(str(err))}")
            return rec
        rec.meta = {"id": _ts(rule.id), "author": _ts(rule.author), "license": "DRL-1.1",
                    "references": " ".join(str(r) for r in rule.references or []), "status": _ts(rule.status)}
        try:
            queries = self.backend.convert_rule(rule)
        except (SigmaError, NotImplementedError) as exc:
            rec.skip(_reason(exc))
            return rec
        if len(queries) != 1 or not isinstance(queries[0], str):
            rec.skip(f"the rule converts to {len(queries)} queries, expected one")
            return rec
        condition = self.settle(rule, str(queries[0]), rec, text)
        if condition is not None:
            rec.entry = self.entry(rule, name, condition)
        return rec

    def settle(self, rule: SigmaRule, query: str, rec: ImportedRule, text: str) -> str | None:
        """The rule's runwatch condition with placeholders folded out; None (and ``rec`` skipped) if none.

        A skip for an unmapped field points at the field's line; so does each warning.
        """
        try:
            res = fold(query)
        except ConditionError as exc:
            rec.skip(f"the translation does not parse: {exc.message}")
            return None
        auditd = rule.logsource.category is None
        if res.unmapped:
            f = res.unmapped[0]
            rec.line = _field_line(text, f)
            rec.skip(f"unmapped field {f}{auditd_why(f) if auditd else _why(f)}")
            return None
        if res.condition is None:
            if res.constant is False:
                rec.line = _value_line(text, next((v for t in res.never if (v := never_value(t))), ""))
                rec.skip(f"can never match: runwatch reports no {', '.join(res.never) or 'such events'}")
            else:
                rec.skip("the translation matches every event")
            return None
        for f in res.dropped_filters:
            rec.warnings.append(f"{rec.file}:{_field_line(text, f)}: filter on unmapped field {f} dropped"
                                f"{auditd_why(f) if auditd else _why(f)}: the rule may alert more often")
        if not auditd:
            return f"{KIND_TERMS[rule.logsource.category or '']} and ({res.condition})"
        try:
            kinds = Compiler({}, {}).compile(parse_condition(res.condition)).kinds
        except (ConditionError, CompileError) as exc:
            rec.skip(f"runwatch rejects the translation: {exc}")
            return None
        if kinds is None:
            rec.skip("the rule does not say which auditd records it matches (no type)")
            return None
        return res.condition

    def entry(self, rule: SigmaRule, name: str, query: str) -> dict[str, Any]:
        """The runwatch rule mapping for a converted Sigma rule, with attribution."""
        # auditd rules: the exec template unless the rule matches file events
        cat = rule.logsource.category or ("" if '"file.' in query else "process_creation")
        attack: list[str] = []
        tags = ["sigma"]
        for t in rule.tags or []:
            aid = attack_id(t.name) if t.namespace == "attack" else None
            if aid is not None and aid not in attack:
                attack.append(aid)
            tags.append(f"{t.namespace}.{t.name}")
        tags += [f"sigma.id:{rule.id}", f"author:{one_line(_ts(rule.author))}", "license:DRL-1.1"]
        tags += [f"reference:{r}" for r in rule.references or []]
        desc = one_line(_ts(rule.description))
        credit = f"Sigma rule {rule.id} by {one_line(_ts(rule.author)) or 'unknown'} (SigmaHQ); {DRL}."
        level = rule.level.name.lower() if rule.level is not None else "medium"
        severity = {"informational": "info"}.get(level, level)
        out_fields = {
            "process_creation": "%proc.exe (%proc.cmdline) parent %proc.pexe uid %proc.uid container %container.id",
            "network_connection": "%proc.exe to %net.dst.ip:%net.dst.port container %container.id",
        }.get(cat, "%proc.exe %file.path container %container.id")
        title = one_line(rule.title).replace("%", "%%")
        return {
            "rule": name,
            "desc": f"{rule.title}. {desc} {credit}".strip(),
            "condition": query,
            "output": f"{title}: {out_fields}",
            "severity": severity,
            "attack": attack,
            "mappings": {"owasp_agentic": [], "owasp_llm": [], "owasp_nhi": [],
                         "nist_csf": list(NIST_NET if cat == "network_connection" else NIST_HOST)},
            "enabled": rule.status is None or rule.status.name.lower() not in ("deprecated", "unsupported"),
            "tags": tags,
        }


def _reason(exc: BaseException) -> str:
    """One line from a pySigma error, without its location suffix."""
    text = one_line(str(exc))
    return re.sub(r"\s*\(line \d+.*?\)$", "", text) or type(exc).__name__


def detection_fields(rule: SigmaRule) -> set[str]:
    """Every field named in a rule's detections (for reports and tests)."""
    out: set[str] = set()

    def walk(d: SigmaDetection | SigmaDetectionItem) -> None:
        if isinstance(d, SigmaDetection):
            for item in d.detection_items:
                walk(item)
        elif d.field is not None:
            out.add(d.field)

    for det in rule.detection.detections.values():
        walk(det)
    return out

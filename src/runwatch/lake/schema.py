"""The lake's table layout: one stable Arrow schema per OCSF class, and rows to and from records.

Every class's files have the same columns, in the same order, whatever a record carries:

* ``record_id`` (string): the record's ``metadata.uid`` (the event or alert id), the key a
  consumer de-duplicates by;
* the OCSF attributes of the class (the base event's, the host, container and security control
  profiles', and the class's own) as columns named like the attribute. A scalar attribute is a
  plain typed column (``int64`` for OCSF integers, longs and millisecond timestamps, ``bool``,
  ``double``, ``string``); an attribute whose value is an object or an array (``process``,
  ``metadata``, ``answers``, ``unmapped``, ...) is a ``string`` column holding its JSON. OCSF
  objects are recursive and mostly optional (a process's parent is a process; the mapping fills
  what it knows), so no struct type fits every record; JSON keeps every value and stays readable
  by DuckDB (``process->>'$.file.path'``), Trino and Athena (``json_extract_scalar``) and Spark
  (``get_json_object``).

``class_uid``, ``day`` and ``hour`` are not in the files: they are the Hive partition
directories (``class_uid=1007/day=2026-12-04/hour=20``), which every engine reads back as
columns. A record attribute the class has no column for (none of the mapping's do; a test keeps
it so) is kept under ``unmapped`` with its name, never dropped.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import pyarrow as pa  # type: ignore[import-untyped]

RECORD_ID = "record_id"
#: The Hive partition keys, outermost first.
PARTITIONS = ("class_uid", "day", "hour")

_INT, _STR, _BOOL, _FLOAT, _JSON = "int", "str", "bool", "float", "json"
_ARROW = {_INT: pa.int64(), _STR: pa.string(), _BOOL: pa.bool_(), _FLOAT: pa.float64(), _JSON: pa.string()}

# The base event's attributes (class_uid is the partition), then the host, container and
# security control profiles' (device, actor; container; action, disposition, attacks).
_BASE: tuple[tuple[str, str], ...] = (
    ("class_name", _STR), ("category_uid", _INT), ("category_name", _STR), ("activity_id", _INT),
    ("activity_name", _STR), ("type_uid", _INT), ("type_name", _STR), ("time", _INT), ("start_time", _INT),
    ("end_time", _INT), ("count", _INT), ("duration", _INT), ("timezone_offset", _INT), ("severity_id", _INT),
    ("severity", _STR), ("status_id", _INT), ("status", _STR), ("status_code", _STR), ("status_detail", _STR),
    ("message", _STR), ("raw_data", _STR), ("metadata", _JSON), ("observables", _JSON), ("enrichments", _JSON),
    ("device", _JSON), ("actor", _JSON), ("container", _JSON), ("action_id", _INT), ("action", _STR),
    ("disposition_id", _INT), ("disposition", _STR), ("attacks", _JSON), ("unmapped", _JSON),
)
_NETWORK = (("src_endpoint", _JSON), ("dst_endpoint", _JSON), ("connection_info", _JSON), ("traffic", _JSON),
            ("proxy", _JSON), ("tls", _JSON))


@dataclass(frozen=True)
class LakeClass:
    """One OCSF class's table: its uid, view name and the columns its files have."""

    uid: int
    view: str
    own: tuple[tuple[str, str], ...]

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        """(name, kind) of every column in file order: record_id, the base columns, the class's own."""
        return ((RECORD_ID, _STR), *_BASE, *self.own)

    @property
    def arrow_schema(self) -> pa.Schema:
        """The class's Arrow schema (every column nullable; record_id is always set)."""
        return pa.schema([pa.field(n, _ARROW[k], nullable=n != RECORD_ID) for n, k in self.columns])


#: Every class the OCSF mapping (events and alerts) produces, by class_uid.
CLASSES: dict[int, LakeClass] = {c.uid: c for c in (
    LakeClass(0, "base_event", ()),
    LakeClass(1001, "file_activity", (("file", _JSON), ("file_result", _JSON), ("file_diff", _STR),
                                      ("access_mask", _INT), ("create_mask", _STR), ("component", _STR),
                                      ("connection_uid", _STR))),
    LakeClass(1002, "kernel_extension_activity", (("driver", _JSON),)),
    LakeClass(1003, "kernel_activity", (("kernel", _JSON),)),
    LakeClass(1005, "module_activity", (("module", _JSON),)),
    LakeClass(1007, "process_activity", (("process", _JSON), ("launch_type_id", _INT), ("launch_type", _STR),
                                         ("exit_code", _INT), ("injection_type_id", _INT), ("injection_type", _STR),
                                         ("module", _JSON), ("requested_permissions", _INT),
                                         ("actual_permissions", _INT))),
    LakeClass(2004, "detection_finding", (("finding_info", _JSON), ("evidences", _JSON), ("is_alert", _BOOL),
                                          ("confidence_id", _INT), ("confidence", _STR), ("confidence_score", _INT),
                                          ("impact_id", _INT), ("impact", _STR), ("impact_score", _INT),
                                          ("risk_level_id", _INT), ("risk_level", _STR), ("risk_score", _INT),
                                          ("resources", _JSON), ("remediation", _JSON), ("malware", _JSON),
                                          ("vulnerabilities", _JSON), ("anomaly_analyses", _JSON))),
    LakeClass(4001, "network_activity", (*_NETWORK, ("url", _JSON), ("is_src_dst_assignment_known", _BOOL))),
    LakeClass(4003, "dns_activity", (*_NETWORK, ("query", _JSON), ("answers", _JSON), ("rcode_id", _INT),
                                     ("rcode", _STR), ("query_time", _INT), ("response_time", _INT))),
    LakeClass(6003, "api_activity", (("api", _JSON), ("src_endpoint", _JSON), ("dst_endpoint", _JSON),
                                     ("http_request", _JSON), ("http_response", _JSON), ("resources", _JSON),
                                     ("trace", _JSON))),  # the trace profile's (tool and model calls)
)}

_encoder = msgspec.json.Encoder()


class LakeError(Exception):
    """The lake could not be written or read (one line naming the path)."""


def lake_class(class_uid: object) -> LakeClass:
    """The table of ``class_uid``; an unknown class is a LakeError."""
    if not isinstance(class_uid, int) or class_uid not in CLASSES:
        raise LakeError(f"OCSF class_uid {class_uid!r} has no lake table (known: {', '.join(map(str, CLASSES))})")
    return CLASSES[class_uid]


def partition_of(record: dict[str, Any]) -> tuple[int, str, str]:
    """(class_uid, day, hour) of a record, from its class and its ``time`` (ms, UTC). The hour has
    no leading zero (``hour=3``), so every engine reads it as an integer."""
    ms = record.get("time")
    if type(ms) is not int:
        raise LakeError(f"record {record.get('metadata', {}).get('uid')!r}: time {ms!r} is not milliseconds")
    if not 0 <= ms < _YEAR_10000_MS:  # a day every engine takes as a DATE
        raise LakeError(f"record {record.get('metadata', {}).get('uid')!r}: time {ms!r} is out of range")
    uid = record.get("class_uid")
    return (uid if isinstance(uid, int) and uid in CLASSES else lake_class(uid).uid), *_day_hour(ms // 3_600_000)


_YEAR_10000_MS = 253_402_300_800_000


@functools.lru_cache(maxsize=256)
def _day_hour(hours: int) -> tuple[str, str]:
    t = time.gmtime(hours * 3600)
    return time.strftime("%Y-%m-%d", t), str(t.tm_hour)


def partition_dir(class_uid: int, day: str, hour: str) -> str:
    """The relative Hive directory of a partition."""
    return f"class_uid={class_uid}/day={day}/hour={hour}"


def record_id(record: dict[str, Any]) -> str:
    """The record's id (``metadata.uid``); a record without one is a LakeError."""
    meta = record.get("metadata")
    uid = meta.get("uid") if isinstance(meta, dict) else None
    if not isinstance(uid, str) or not uid:
        raise LakeError(f"OCSF record without metadata.uid (class {record.get('class_uid')!r})")
    return uid


_ACCEPTS: dict[str, frozenset[type]] = {_INT: frozenset({int}), _STR: frozenset({str}),
                                       _BOOL: frozenset({bool}), _FLOAT: frozenset({int, float})}
_INT64 = range(-(1 << 63), 1 << 63)


@functools.cache
def _kinds(class_uid: int) -> dict[str, str]:
    return dict(lake_class(class_uid).columns)


def to_row(record: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The record as a row of its class's table, and how many attributes had no column or a value
    of another type than their column's (those are kept under ``unmapped`` by name)."""
    uid = record.get("class_uid")
    kinds = _kinds(uid) if isinstance(uid, int) and uid in CLASSES else _kinds(lake_class(uid).uid)
    row: dict[str, Any] = {RECORD_ID: record_id(record)}
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if value is None or key == "class_uid":
            continue
        kind = kinds.get(key)
        if kind == _JSON:
            row[key] = _encoder.encode(value).decode()
        elif kind is not None and key != RECORD_ID and type(value) in _ACCEPTS[kind] and (
                kind != _INT or value in _INT64):
            row[key] = value
        else:
            extra[key] = value
    if extra:
        unmapped = dict(record.get("unmapped") or {})
        unmapped.update(extra)
        row["unmapped"] = _encoder.encode(unmapped).decode()
    return row, len(extra)


def from_row(row: dict[str, Any]) -> dict[str, Any]:
    """The OCSF record a row (with its ``class_uid`` partition column) holds: JSON columns decoded,
    null columns and the lake's own columns (record_id, day, hour) left out."""
    uid = row.get("class_uid")
    cls = lake_class(int(uid) if uid is not None else None)
    record: dict[str, Any] = {"class_uid": cls.uid}
    for name, kind in cls.columns:
        value = row.get(name)
        if name == RECORD_ID or value is None:
            continue
        record[name] = msgspec.json.decode(value) if kind == _JSON else value
    return record


def describe() -> dict[str, Any]:
    """Every class's table as plain data ({class_uid: {view, columns: ["name arrow-type", ...]}}),
    for the snapshot that keeps the tables add-only (tests/lake/lake_schema.json)."""
    return {str(c.uid): {"view": c.view, "columns": [f"{f.name} {f.type}" for f in c.arrow_schema]}
            for c in CLASSES.values()}

"""The records the lake holds: OCSF events and Detection Findings with the original in ``raw_data``.

Events are rendered with the OCSF event mapping (:func:`runwatch.outputs.ocsf.to_ocsf`) and
alerts as Detection Findings (:func:`runwatch.alerts.render.to_ocsf`), the same records as
``runwatch events --format ocsf``; the lake adds ``raw_data``, the OCSF base attribute for the
original event: the runwatch event or alert as its JSON (what the SQLite store keeps; secret
contents are never in it, only paths and sizes). :mod:`runwatch.lake.read` decodes it back, so
``report`` and the console build from the lake exactly what they build from the store.
"""

from __future__ import annotations

from typing import Any

from runwatch.alerts.model import Alert
from runwatch.alerts.render import to_json as alert_json
from runwatch.alerts.render import to_ocsf as alert_to_ocsf
from runwatch.events import Event, to_json
from runwatch.outputs.ocsf import to_ocsf


def event_record(event: Event, *, hostname: str | None = None) -> dict[str, Any]:
    """The event's OCSF record with the event's JSON in ``raw_data``."""
    raw = to_json(event).decode()  # first: the mapping may bring an old event up to date in place
    record = to_ocsf(event, hostname=hostname)
    record["raw_data"] = raw
    return record


def alert_record(alert: Alert, *, hostname: str | None = None) -> dict[str, Any]:
    """The alert's Detection Finding with the alert's JSON in ``raw_data``."""
    record = alert_to_ocsf(alert, hostname=hostname)
    record["raw_data"] = alert_json(alert).decode()
    return record

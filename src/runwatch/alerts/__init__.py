"""Alerts: the schema of the DESIGN.md contract, dedupe/throttle, and renderers.

Import this package without the CLI or any sink; it depends only on ``runwatch.events``.
"""

from runwatch.alerts.model import (
    SEVERITY_ORDER,
    Alert,
    AlertProcess,
    AlertToolCall,
    Mappings,
    Workload,
    alert_from_event,
    workload_of,
)
from runwatch.alerts.render import from_json, render_text, to_dict, to_json, to_ocsf
from runwatch.alerts.throttle import Throttle

__all__ = [
    "SEVERITY_ORDER",
    "Alert",
    "AlertProcess",
    "AlertToolCall",
    "Mappings",
    "Throttle",
    "Workload",
    "alert_from_event",
    "from_json",
    "render_text",
    "to_dict",
    "to_json",
    "to_ocsf",
    "workload_of",
]

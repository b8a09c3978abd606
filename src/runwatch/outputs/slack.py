"""An alert as a Slack incoming-webhook message (also what Mattermost and Rocket.Chat accept).

The message has ``text`` (the one-line fallback notifications show) and ``blocks``: a header
with severity and rule, a section with the alert's output, one section of fields (severity,
rule, workload, process, tool call, ATT&CK ids) and a context line with the alert id and time.
Text from the workload is escaped for Slack's mrkdwn (``&``, ``<``, ``>``) and control
characters are shown escaped, so a workload cannot add links or mentions to the message.
"""

from __future__ import annotations

import time
from typing import Any

from runwatch.alerts.model import Alert
from runwatch.textsafe import printable

_MAX_TEXT = 2900  # Slack refuses section text over 3000 characters


def _esc(text: str, limit: int = _MAX_TEXT) -> str:
    text = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stamp(ns: int) -> str:
    secs, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest // 1_000_000:03d}Z"


def workload_text(a: Alert) -> str:
    """How the alert's workload is named: ``name (id12)``, with pod and owner when known, or ``host``."""
    w = a.workload
    if not w.id:
        return "host"
    text = f"{w.name} ({w.id[:12]})" if w.name else w.id[:12]
    if w.pod:
        text += f" pod {w.namespace + '/' if w.namespace else ''}{w.pod}"
    if w.owner:
        text += f" owner {w.owner}"
    return text


def slack_message(a: Alert) -> dict[str, Any]:
    """The incoming-webhook JSON of alert ``a`` (see the module docstring)."""
    sev = a.severity.upper()
    process = f"{a.process.exe or '?'} (pid {a.process.pid})"
    if a.process.cmdline:
        process += f": {a.process.cmdline}"
    tool = a.tool_call.name + (f" ({a.tool_call.call_id})" if a.tool_call.call_id else "") if a.tool_call else "none"
    fields = [("Severity", sev), ("Rule", a.rule), ("Workload", workload_text(a)), ("Process", process),
              ("Tool call", tool), ("ATT&CK", ", ".join(a.attack) or "none")]
    count = f" (x{a.count})" if a.count > 1 else ""
    return {
        "text": _esc(f"[{sev}] {a.rule}: {a.output}{count}"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": printable(f"{sev} {a.rule}")[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _esc(a.output + count)}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_esc(value, 1900)}"}
                                           for name, value in fields]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"runwatch alert {_esc(a.id)} at "
                                              f"{_stamp(a.time)}"}]},
        ],
    }

"""Fixtures of the output tests: 23 alerts, severities, tags and owners in a fixed pattern."""

from __future__ import annotations

import pytest

from runwatch.alerts.model import Alert, AlertProcess, AlertToolCall, Workload

SEVERITIES = ("info", "low", "medium", "high", "critical")
T0 = 1_764_000_000_123_456_789


def make_alerts(n: int = 23) -> list[Alert]:
    """``n`` alerts: alert i has severity SEVERITIES[i % 5], tag ``exfil`` when i % 3 == 0, owner
    ``team-pay`` when i % 4 == 0 (else ``team-ml``), a tool call when i is odd."""
    out = []
    for i in range(n):
        out.append(Alert(
            id=f"al-{i:02d}", time=T0 + i * 1_000_000, rule=f"rule_{i % 7}", severity=SEVERITIES[i % 5],
            output=f"alert number {i} from /usr/bin/tool-{i}", attack=["T1059", "T1041"] if i % 2 else ["T1552.001"],
            workload=Workload(id=f"{i:02d}" + "c" * 62, name=f"agent-{i}", runtime="runc", pod="p", namespace="ns",
                              governance_owner="team-pay" if i % 4 == 0 else "team-ml"),
            process=AlertProcess(pid=1000 + i, exe=f"/usr/bin/tool-{i}", cmdline=f"tool-{i} --x", ancestry=["/bin/sh"]),
            tool_call=AlertToolCall("run_shell", f"call-{i}", "planner") if i % 2 else None,
            tags=["exfil"] if i % 3 == 0 else ["shell"], first_time=T0 + i * 1_000_000))
    return out


@pytest.fixture
def alerts() -> list[Alert]:
    """The 23 alerts of :func:`make_alerts`."""
    return make_alerts()

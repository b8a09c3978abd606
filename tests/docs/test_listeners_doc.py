"""docs/listeners.md quotes each listener's limits as the code has them, and the README links it."""

from __future__ import annotations

import inspect
from pathlib import Path

from runwatch import listeners
from runwatch.policy import server
from runwatch.sdk import wire
from runwatch.sensors.ingest import otlp

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "listeners.md").read_text()


def test_every_quoted_constant_has_the_codes_value() -> None:
    constants = {
        "MAX_CONNECTIONS": listeners.MAX_CONNECTIONS, "IDLE_TIMEOUT_S": int(listeners.IDLE_TIMEOUT_S),
        "MAX_DATAGRAM": wire.MAX_DATAGRAM, "MAX_FIELD": wire.MAX_FIELD, "MAX_ARGS": wire.MAX_ARGS,
        "MAX_ARGV": wire.MAX_ARGV, "MAX_DECODING": otlp.MAX_DECODING, "UNAUTHORIZED_DRAIN": otlp.UNAUTHORIZED_DRAIN,
        "MAX_BODY": server.MAX_BODY,
        "_MAX_LINE": server._MAX_LINE, "_MAX_HEADERS": server._MAX_HEADERS, "_MAX_WAIT_S": int(server._MAX_WAIT_S),
    }
    missing = [f"`{name}` = {value}" for name, value in constants.items() if f"`{name}` = {value}" not in DOC]
    assert missing == []


def test_otlp_defaults_are_the_receivers() -> None:
    params = inspect.signature(otlp.OtlpReceiver.__init__).parameters
    assert params["max_body"].default == 4 << 20 and "`max_body` = 4 MiB" in DOC
    assert params["max_queue"].default == 65536 and "`max_queue` = 65536" in DOC
    assert "twice that (8 MiB)" in DOC


def test_every_listener_has_a_section_and_the_readme_links_the_page() -> None:
    titles = ("## Agent SDK socket", "## OTLP/HTTP receiver", "## Policy decide socket", "## Policy control socket")
    assert [t for t in titles if t not in DOC] == []
    assert "docs/listeners.md" in (ROOT / "README.md").read_text()

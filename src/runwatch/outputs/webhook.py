"""Webhook and Slack alert outputs: each alert POSTed as JSON to a URL.

``webhook`` sends the alert contract itself (the same JSON as ``runwatch alerts --format
json``), signed with HMAC-SHA256 when a secret is given (``X-Runwatch-Signature:
sha256=<hex of HMAC(secret, body)>``: the receiver recomputes it over the raw body); the
alert's ``id`` is unique, so a receiver can drop the rare duplicate a lost answer causes.
``slack`` sends a Slack incoming-webhook message (:mod:`runwatch.outputs.slack`). Both
deliver through :class:`~runwatch.outputs.delivery.Delivery` (retries with backoff, a disk
spool, counters).
"""

from __future__ import annotations

import json

from runwatch.alerts.model import Alert
from runwatch.alerts.render import to_json
from runwatch.outputs.base import register_output
from runwatch.outputs.delivery import Delivery, RetryPolicy
from runwatch.outputs.http import HttpTransport, TlsOptions
from runwatch.outputs.network import NetworkAlertOutput
from runwatch.outputs.slack import slack_message
from runwatch.store.spool import SpoolLimits


def _slack_json(a: Alert) -> bytes:
    return json.dumps(slack_message(a), ensure_ascii=False, separators=(",", ":")).encode()


def webhook_output(url: str, *, name: str = "webhook", fmt: str = "json", secret: bytes | None = None,
                   headers: dict[str, str] | None = None, timeout: float = 5.0, tls: TlsOptions | None = None,
                   spool_dir: str | None = None, spool_limits: SpoolLimits | None = None, queue_max: int = 1024,
                   retry: RetryPolicy | None = None, close_timeout: float = 5.0) -> NetworkAlertOutput:
    """An alert output POSTing each alert to ``url`` as ``fmt`` (``json`` or ``slack``)."""
    if fmt not in ("json", "slack"):
        raise ValueError(f"unknown webhook format {fmt!r} (json or slack)")
    transport = HttpTransport(url, content_type="application/json", headers=headers, secret=secret,
                              timeout=timeout, tls=tls)
    delivery = Delivery(name, transport, spool_dir=spool_dir, spool_limits=spool_limits, queue_max=queue_max,
                        retry=retry, close_timeout=close_timeout)
    return NetworkAlertOutput(name, delivery, to_json if fmt == "json" else _slack_json)


def slack_output(url: str, *, name: str = "slack", **options: object) -> NetworkAlertOutput:
    """:func:`webhook_output` with Slack messages."""
    return webhook_output(url, name=name, fmt="slack", **options)  # type: ignore[arg-type]


register_output("webhook", webhook_output)
register_output("slack", slack_output)

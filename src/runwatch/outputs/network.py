"""The alert output of every network destination: encode each alert, hand it to a :class:`Delivery`.

:class:`NetworkAlertOutput` is an :class:`~runwatch.outputs.base.AlertOutput` whose
``write_alerts`` encodes each alert into one payload (``encode``) and submits it, so the
pipeline thread never waits on the endpoint; the sender thread, queue, spool, retries and
counters are the delivery's (:mod:`runwatch.outputs.delivery`). ``output_stats()`` gives
the delivery's counters; the session puts them in the run summary under ``outputs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runwatch.alerts.model import Alert
from runwatch.outputs.delivery import Delivery


class NetworkAlertOutput:
    """Alerts encoded by ``encode`` and sent by ``delivery`` (one payload per alert)."""

    def __init__(self, name: str, delivery: Delivery, encode: Callable[[Alert], bytes]) -> None:
        self.name = name
        self.delivery = delivery
        self.encode = encode
        self.encode_errors = 0

    def open(self) -> None:
        """Start the sender (and send what the spool kept from an earlier session)."""
        self.delivery.open()

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Encode and queue each alert, in order (never waits on the network)."""
        for a in alerts:
            self.delivery.submit(self.encode(a))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (up to ``timeout`` s) until everything queued was sent; True if it was."""
        return self.delivery.flush(timeout)

    def close(self) -> None:
        """Send what is left while the endpoint answers; spool the rest (bounded by the close timeout)."""
        self.delivery.close()

    def output_stats(self) -> dict[str, Any]:
        """The delivery's counters (sent, retried, spooled, dropped, ...)."""
        return self.delivery.stats()

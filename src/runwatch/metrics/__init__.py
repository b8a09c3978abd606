"""Prometheus ``/metrics`` for a running session (``--metrics-listen HOST:PORT``).

* :mod:`runwatch.metrics.tap`: the one output that counts what the session's counters do not
  (events by kind and source, decisions by verdict, alerts by rule and severity, pipeline lag),
  per batch, with C-level passes over the batch;
* :mod:`runwatch.metrics.collector`: a custom collector that reads the session's existing
  counters (pipeline, sources, kernel ring and drops, tool-call join, store, outputs) when
  Prometheus scrapes, so nothing else is counted on the hot path;
* :mod:`runwatch.metrics.server`: where it may listen (loopback unless allowed) and the HTTP
  server. Every metric is listed in ``docs/metrics.md``.
"""

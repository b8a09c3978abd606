"""Ingest sources: telemetry other tools produce (OpenTelemetry GenAI spans over OTLP/HTTP)."""

from runwatch.sensors.ingest.otlp import OtlpReceiver

__all__ = ["OtlpReceiver"]

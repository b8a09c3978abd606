"""In-process sources: the agent SDK collector (and, later, the audit-hook sensor)."""

from runwatch.sensors.inproc.collector import SdkCollector

__all__ = ["SdkCollector"]

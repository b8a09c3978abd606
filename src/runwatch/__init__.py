"""runwatch: runtime telemetry, detection and policy for containerised AI workloads."""

__version__ = "0.1.0"

"""Observability: the per-call trace (and, later, OTel spans and Prometheus metrics)."""

from tether.telemetry.trace import Attempt, Trace, TraceEvent

__all__ = ["Attempt", "Trace", "TraceEvent"]

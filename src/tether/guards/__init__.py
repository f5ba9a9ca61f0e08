"""Guardrails: input and output guards with designed actions, traced verdicts, streaming.

The protocol is one method (:class:`Guard`); :class:`GuardRunner` runs a feature's guards and
applies their actions; :class:`GuardsConfig` is the ``guards:`` block of a feature (a config
model: it lives in :mod:`tether.config.guards`, which imports nothing of this package).
"""

from tether.config.guards import GuardsConfig, GuardSpec, StreamConfig
from tether.guards.base import Finding, Guard, GuardAction, GuardContext, Stage, Verdict
from tether.guards.outcome import Decision, GuardOutcome, GuardResult
from tether.guards.redact import Redactor
from tether.guards.registry import build_guard
from tether.guards.runner import GuardRunner
from tether.guards.stream import GuardedStream

__all__ = [
    "Decision",
    "Finding",
    "Guard",
    "GuardAction",
    "GuardContext",
    "GuardOutcome",
    "GuardResult",
    "GuardRunner",
    "GuardSpec",
    "GuardedStream",
    "GuardsConfig",
    "Redactor",
    "Stage",
    "StreamConfig",
    "Verdict",
    "build_guard",
]

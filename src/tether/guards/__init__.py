"""Guardrails: input and output guards with designed actions, traced verdicts, streaming.

The protocol is one method (:class:`Guard`); :class:`GuardRunner` runs a feature's guards and
applies their actions; :class:`GuardsConfig` is the ``guards:`` block of a feature.
"""

# tether.config's models import tether.guards.config: load the config package first, so that
# importing tether.guards on its own never finds tether.guards.config half-initialised.
import tether.config  # noqa: F401
from tether.guards.base import Finding, Guard, GuardAction, GuardContext, Stage, Verdict
from tether.guards.config import GuardsConfig, GuardSpec, StreamConfig
from tether.guards.redact import Redactor
from tether.guards.registry import build_guard
from tether.guards.runner import Decision, GuardOutcome, GuardResult, GuardRunner
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

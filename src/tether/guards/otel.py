"""OpenTelemetry: each verdict as a ``gen_ai.evaluation.result`` event on the active span.

``opentelemetry-api`` is optional: without it, or without a recording span, nothing happens.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from tether.guards.base import Verdict

EVENT_NAME = "gen_ai.evaluation.result"


class EvaluationEvents:
    """Looks the OTel API up once (per runner), then emits one event per verdict."""

    def __init__(self) -> None:
        self._api: Any = None
        self._looked = False

    def _trace_api(self) -> Any:
        if not self._looked:
            self._looked = True
            try:
                self._api = importlib.import_module("opentelemetry.trace")
            except ImportError:
                self._api = None
        return self._api

    def emit(
        self,
        name: str,
        verdict: Verdict,
        *,
        stage: str,
        action: str | None,
        where: Mapping[str, Any] | None = None,
    ) -> bool:
        """Add the event to the current span; True when it was recorded."""
        api = self._trace_api()
        if api is None:
            return False
        span = api.get_current_span()
        if not span.is_recording():
            return False
        attributes: dict[str, Any] = {
            "gen_ai.evaluation.name": name,
            "gen_ai.evaluation.score.value": float(verdict.score),
            "gen_ai.evaluation.score.label": "pass" if verdict.passed else "fail",
            "tether.guard.stage": stage,
        }
        if verdict.reason:
            attributes["gen_ai.evaluation.explanation"] = verdict.reason
        if action is not None:
            attributes["tether.guard.action"] = action
        for key, value in (where or {}).items():  # message_index, role, part: never the text
            if value is not None:
                attributes[f"tether.guard.{key}"] = value
        span.add_event(EVENT_NAME, attributes=attributes)
        return True

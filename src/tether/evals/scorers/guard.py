"""A guard as a scorer: ``{type: guard, value: pii}`` passes when the guard finds nothing in the
answer ("no personal data in the answer").

The value is a guard as the ``guards:`` config writes one: a built-in name (``pii``,
``pii_detect``, ``pii_redact``, ``prompt_injection``, ``secrets``, ``banned``, ``topics``,
``max_length``, ``json_schema``, ...), a one-key mapping with its options (``{banned: {words:
[refund]}}``), ``module:function``, or an entry point of group ``tether.guards``. It runs as
the guard runner runs an output guard (an async guard within its ``latency_budget_ms``; a guard
that raises fails the case with its error). The score is ``1 - `` the guard's score (0 clean,
1 certainly bad); the reason is the guard's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tether.config.guards import GuardSpec
from tether.errors import ConfigError
from tether.evals.scorers.base import Factory
from tether.evals.scorers.common import bad
from tether.evals.types import Assertion, Case, Output, Score, Scorer, ScoringContext
from tether.guards.base import GuardContext
from tether.guards.outcome import BoundGuard, run_guard

ALIASES = {"pii_detect": "pii"}  # a scorer only detects: redaction has no meaning here


def guard_spec(assertion: Assertion, value: Any) -> GuardSpec:
    """The guard spec of a ``guard`` assert's value. Raises DatasetError."""
    if isinstance(value, str):
        value = ALIASES.get(value, value)
    elif isinstance(value, dict) and len(value) == 1:
        ((name, body),) = value.items()
        value = {ALIASES.get(name, name): body}
    if not value:
        raise bad(assertion, "needs a guard as its value, e.g. pii or {banned: {words: [x]}}")
    try:
        return GuardSpec.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise bad(assertion, f"the guard {value!r} is invalid: {problems}") from None


@dataclass(slots=True)
class GuardScorer:
    name: str
    bound: BoundGuard
    feature: str

    async def score(self, case: Case, output: Output) -> Score:
        ctx = GuardContext(stage="output", feature=self.feature)
        verdict, error = await run_guard(self.bound, output.text, ctx)
        value = min(1.0, max(0.0, 1.0 - verdict.score))
        if verdict.passed:
            return Score(value, True, f"guard {self.bound.name} found nothing")
        reason = verdict.reason or f"guard {self.bound.name} failed"
        if error is not None and not verdict.reason:
            reason = f"guard {self.bound.name} errored: {error}"
        return Score(0.0 if error else value, False, reason)


def _guard(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    from tether.guards.registry import build_guard

    spec = guard_spec(assertion, assertion.value)
    services = None if ctx.tether is None else ctx.tether.guard_services  # llm_judge's providers
    try:
        guard = build_guard(spec, services)
    except ConfigError as exc:
        raise bad(assertion, str(exc)) from None
    return GuardScorer(assertion.name, BoundGuard(spec, guard), ctx.feature or "")


FACTORIES: dict[str, Factory] = {"guard": _guard}

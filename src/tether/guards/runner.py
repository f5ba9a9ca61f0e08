"""Run a feature's guards over a call's input and output, apply their actions, record verdicts.

The pipeline builds one :class:`GuardRunner` per feature and, per call, one
:class:`GuardContext` (it carries the trace and the redaction map)::

    runner = GuardRunner(feature.guards)
    ctx = GuardContext(feature="support", system_prompt=system, trace=trace)
    inp = runner.check_input(user_text, ctx)      # or: await runner.acheck_input(...)
    inp.raise_for_decision()                      # GuardBlocked -> the failure path
    ... call the model with inp.text (placeholders instead of PII) ...
    out = runner.check_output(model_text, ctx)    # ctx.reasks = n on the n-th re-ask
    if out.decision == "reask": ask again, appending out.reask_message
    elif out.decision == "fallback": try the next model
    out.raise_for_decision(); respond with out.text (originals restored), out.value (typed)

Decisions: ``pass`` (``review`` may still be set), ``block``, ``reask``, ``fallback``. The first
guard that blocks / re-asks / falls back ends the run; ``redact`` rewrites the text for the
guards after it; ``review`` and ``log`` only record.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from tether.config.guards import GuardsConfig, GuardSpec
from tether.guards.base import Guard, GuardContext, Stage, Verdict
from tether.guards.otel import EvaluationEvents
from tether.guards.outcome import (
    BoundGuard,
    Decision,
    GuardOutcome,
    GuardResult,
    run_guard,
    run_now,
)
from tether.guards.redact import Redactor, dump_value
from tether.guards.registry import GuardServices, build_guard
from tether.guards.stream import GuardedStream

__all__ = [
    "BoundGuard",
    "Decision",
    "GuardOutcome",
    "GuardResult",
    "GuardRunner",
    "default_reask",
    "message_ref",
    "run_guard",
    "run_now",
]


class GuardRunner:
    """A feature's input and output guards, built once and reused across calls."""

    def __init__(
        self,
        config: GuardsConfig,
        *,
        guards: dict[str, Guard] | None = None,
        rng: random.Random | None = None,
        services: GuardServices | None = None,
    ) -> None:
        """``guards`` overrides building by name (tests, pre-built instances); ``services``
        reach the configured providers (a guard that asks a model: ``llm_judge``)."""
        self.config = config
        given = guards or {}

        def bound(spec: GuardSpec) -> BoundGuard:
            return BoundGuard(spec, given.get(spec.name) or build_guard(spec, services))

        self.input = [bound(s) for s in config.input]
        self.output = [bound(s) for s in config.output]
        self._rng = rng or random.Random()
        self.events = EvaluationEvents()

    # ------------------------------------------------------------------ checks

    def check_input(self, text: str, ctx: GuardContext) -> GuardOutcome:
        return run_now(self._check(self.input, text, ctx, "input", SYNC_REFUSAL))

    def check_output(self, text: str, ctx: GuardContext) -> GuardOutcome:
        return run_now(self._check(self.output, text, ctx, "output", SYNC_REFUSAL))

    async def acheck_input(self, text: str, ctx: GuardContext) -> GuardOutcome:
        return await self._check(self.input, text, ctx, "input", None)

    async def acheck_output(self, text: str, ctx: GuardContext) -> GuardOutcome:
        return await self._check(self.output, text, ctx, "output", None)

    async def _check(
        self,
        guards: Sequence[BoundGuard],
        text: str,
        ctx: GuardContext,
        stage: Stage,
        refuse_async: str | None,
    ) -> GuardOutcome:
        """The guards in order over ``text``; one loop for the sync path (which refuses async
        guards and so never suspends) and the async one."""
        ctx.stage = stage
        outcome = GuardOutcome(stage, text)
        for bound in guards:
            if stage == "input" and not bound.spec.checks_role(ctx.role):
                continue
            if not self.sampled(bound, ctx, stage):
                continue
            t0 = time.perf_counter()
            verdict, error = await run_guard(bound, outcome.text, ctx, refuse_async=refuse_async)
            if self.apply(bound, verdict, outcome, ctx, _ms(t0), error):
                break
        return self._finish(outcome, ctx)

    # ------------------------------------------------------------------ shared

    def sampled(self, bound: BoundGuard, ctx: GuardContext, stage: Stage) -> bool:
        """Whether this call is in the guard's sample (records the skip when not)."""
        if bound.spec.sample >= 1.0 or self._rng.random() < bound.spec.sample:
            return True
        if ctx.trace is not None:
            ctx.trace.event("guard_skipped", guard=bound.name, stage=stage, why="sampled out")
        return False

    def apply(
        self,
        bound: BoundGuard,
        verdict: Verdict,
        outcome: GuardOutcome,
        ctx: GuardContext,
        latency_ms: float,
        error: str | None = None,
    ) -> bool:
        """Act on a verdict; True when the run stops here (block, reask, fallback)."""
        spec = bound.spec
        stop = False
        action: str | None = None
        if error is not None and spec.on_error == "pass":
            action = "error_pass"
        elif not verdict.passed:
            action = spec.effective_action if error is None else "block"
            stop = self._act(bound, verdict, outcome, ctx, action)
        else:
            if verdict.rewritten is not None:
                outcome.text = verdict.rewritten
            if verdict.value is not None:
                outcome.value = verdict.value
        budget = spec.latency_budget_ms
        result = GuardResult(
            bound.name, outcome.stage, verdict, action, latency_ms,
            over_budget=budget is not None and latency_ms > budget, error=error,
        )  # fmt: skip
        outcome.results.append(result)
        self.record(result, ctx)
        return stop

    def _act(
        self,
        bound: BoundGuard,
        verdict: Verdict,
        outcome: GuardOutcome,
        ctx: GuardContext,
        action: str,
    ) -> bool:
        if action == "log":
            return False
        if action == "review":
            outcome.review = True
            return False
        if action == "redact":
            redacted = self.redact(outcome.text, verdict, ctx, outcome.stage)
            if redacted is not None:
                outcome.text = redacted
                return False
            action = "block"  # nothing to redact: the only safe thing left is to block
        if action == "reask" and outcome.stage == "output":
            if ctx.reasks < bound.spec.max_reasks:
                outcome.decision = "reask"
                ask = getattr(bound.guard, "reask_message", None)
                outcome.reask_message = ask(verdict) if callable(ask) else default_reask(verdict)
            else:
                outcome.decision = "block"
                verdict = Verdict.fail(
                    f"{verdict.reason} (still invalid after {ctx.reasks} re-asks)"
                )
        elif action == "fallback":
            outcome.decision = "fallback"
        else:
            outcome.decision = "block"
        outcome.reason = verdict.reason
        outcome.guard = bound.name
        return True

    def redact(self, text: str, verdict: Verdict, ctx: GuardContext, stage: Stage) -> str | None:
        """The text with the verdict's findings replaced, or None when it has none."""
        if verdict.rewritten is not None:
            return verdict.rewritten
        if not verdict.findings:
            return None
        if ctx.redactor is None:
            ctx.redactor = Redactor()
        return ctx.redactor.redact(text, verdict.findings, reversible=stage == "input")

    def record(self, result: GuardResult, ctx: GuardContext) -> None:
        """The verdict on the trace (spans, never the matched text) and as an OTel event; an
        input verdict on a request's message names its index, role and part."""
        v = result.verdict
        where = message_ref(ctx) if result.stage == "input" else {}
        if ctx.trace is not None:
            ctx.trace.event(
                "guard",
                guard=result.guard,
                stage=result.stage,
                passed=v.passed,
                score=round(v.score, 4),
                action=result.action,
                reason=v.reason,
                findings=[f.as_dict() for f in v.findings],
                latency_ms=round(result.latency_ms, 3),
                over_budget=result.over_budget,
                error=result.error,
                **where,
                **({} if v.decided_by is None else {"decided_by": v.decided_by}),
            )
            if result.action == "review":
                ctx.trace.event("review_requested", guard=result.guard, reason=v.reason, **where)
        self.events.emit(result.guard, v, stage=result.stage, action=result.action, where=where)

    def _finish(self, outcome: GuardOutcome, ctx: GuardContext) -> GuardOutcome:
        if outcome.stage != "output" or ctx.redactor is None or not len(ctx.redactor):
            return outcome
        outcome.redacted = outcome.text
        restored = ctx.redactor.restore(outcome.text)
        if outcome.value is not None:
            outcome.value = ctx.redactor.restore_value(outcome.value)
            if restored != outcome.text:
                restored = dump_value(outcome.value)  # keep JSON valid whatever was restored
        outcome.text = restored
        return outcome

    def stream(self, ctx: GuardContext) -> GuardedStream:
        """A :class:`~tether.guards.stream.GuardedStream` over this runner's output guards."""
        return GuardedStream(self, ctx)


def message_ref(ctx: GuardContext) -> dict[str, Any]:
    """Which message of the request an input check looked at (empty for a bare text)."""
    if ctx.message_index is None:
        return {}
    return {"message_index": ctx.message_index, "role": ctx.role, "part": ctx.part}


def default_reask(verdict: Verdict) -> str:
    return (
        f"Your previous answer was rejected: {verdict.reason}. Answer again and fix exactly that."
    )


SYNC_REFUSAL = "an async guard needs the async path (acheck_input/output)"


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0

"""What a guard run produces, and the one-guard step the runner and the stream share.

:class:`GuardOutcome` is what the guards decided about one text (with each guard's
:class:`GuardResult`); :func:`run_guard` runs one bound guard within its latency budget and
:func:`run_now` drives a check that never suspends (the synchronous paths). Both
:mod:`tether.guards.runner` and :mod:`tether.guards.stream` build on this module, so neither
imports the other to run a guard.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from tether.config.guards import GuardSpec
from tether.errors import GuardBlocked
from tether.guards.base import Guard, GuardContext, Stage, Verdict, as_verdict

Decision = Literal["pass", "block", "reask", "fallback"]
T = TypeVar("T")


@dataclass(slots=True)
class GuardResult:
    """One guard's run: its verdict and what was done about it."""

    guard: str
    stage: Stage
    verdict: Verdict
    action: str | None
    latency_ms: float
    over_budget: bool = False
    error: str | None = None


@dataclass(slots=True)
class GuardOutcome:
    """What the guards decided about one text."""

    stage: Stage
    text: str
    decision: Decision = "pass"
    reason: str = ""
    guard: str | None = None
    reask_message: str | None = None
    review: bool = False
    value: Any = None
    results: list[GuardResult] = field(default_factory=list)
    redacted: str | None = None

    @property
    def passed(self) -> bool:
        return self.decision == "pass"

    @property
    def traced_text(self) -> str:
        """The text a trace may keep: placeholders in, originals not restored (``text`` has
        the originals the user gave back; ``redacted`` is set whenever they were restored)."""
        return self.text if self.redacted is None else self.redacted

    @property
    def verdicts(self) -> list[Verdict]:
        return [r.verdict for r in self.results]

    def raise_for_decision(self) -> None:
        """Raise :class:`GuardBlocked` when blocked; other decisions are the caller's to act on."""
        if self.decision == "block":
            raise GuardBlocked(
                f"{self.stage} guard {self.guard}: {self.reason}",
                guard=self.guard,
                stage=self.stage,
            )


@dataclass(slots=True)
class BoundGuard:
    spec: GuardSpec
    guard: Guard

    @property
    def name(self) -> str:
        return self.spec.label

    @property
    def final_only(self) -> bool:
        """Checked once on the whole text, not on stream windows (json_schema)."""
        return getattr(self.guard, "streaming", "window") == "final"


async def run_guard(
    bound: BoundGuard, text: str, ctx: GuardContext, *, refuse_async: str | None = None
) -> tuple[Verdict, str | None]:
    """One guard's verdict on ``text``, and its error (``None``, ``"timeout"`` or the exception's
    repr): a failing guard gives a failing verdict, never an exception. An async guard is awaited
    within its ``latency_budget_ms``, or, on a synchronous path, refused with ``refuse_async``."""
    budget = bound.spec.latency_budget_ms
    try:
        result = bound.guard.check(text, ctx)
        if inspect.isawaitable(result):
            if refuse_async is not None:
                getattr(result, "close", lambda: None)()  # never awaited: no warning
                raise TypeError(refuse_async)
            async with asyncio.timeout(None if budget is None else budget / 1000.0):
                result = await result
        return as_verdict(result), None
    except TimeoutError:
        after = f" after {budget} ms" if budget else ""
        return Verdict.fail(f"guard timed out{after}"), "timeout"
    except Exception as exc:  # noqa: BLE001 - a failing guard takes its on_error path
        return Verdict.fail(f"guard error: {exc!r}"), repr(exc)


def run_now(step: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a synchronous path) to its result."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a synchronous guard check suspended; use the async methods")

"""``ensemble``: one verdict from several guards, and which of them decided.

Members are any guard specs (built-ins, ``prompt_injection`` with ``model:``, ``llm_judge``,
custom guards, other ensembles), asked in the order given:

* ``any``: fails as soon as a member fails (the members after it are not asked);
* ``all``: passes as soon as a member passes; fails when every member failed;
* ``weighted``: asks every member and fails when the weighted mean score reaches the
  ensemble's ``threshold`` (default 0.5);
* ``cascade``: asks the next member only while the score is inside ``band`` ``[low, high]``;
  outside it (or at the last member) that member's verdict stands. The fast built-in goes
  first; a model or judge behind it only sees the texts it was unsure about.

A member that errors or runs over its ``latency_budget_ms`` gives the verdict its own
``on_error`` says (``pass`` or a failure); in a cascade it has no score, so the next member is
asked. The verdict's ``decided_by`` names the member(s) that decided (``a+b`` when several
did, ``ensemble/llm_judge`` inside a nested ensemble); each member's verdict is a trace event
``guard_member``. While every member answers synchronously, so does the ensemble (the sync
check paths work); from the first member that answers with an awaitable, the rest is awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Coroutine, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.config.guards import EnsembleOptions, GuardSpec
from tether.guards.base import Finding, Guard, GuardContext, Verdict, as_verdict

__all__ = ["EnsembleGuard", "Member", "MemberVerdict"]


@dataclass(frozen=True, slots=True)
class Member:
    """A member guard, its spec and its name in ``decided_by``."""

    spec: GuardSpec
    guard: Guard
    name: str

    @property
    def final_only(self) -> bool:
        """Reads whole texts only (``json_schema``, ``llm_judge``): never stream windows."""
        return getattr(self.guard, "streaming", "window") == "final"


@dataclass(frozen=True, slots=True)
class MemberVerdict:
    """One member's answer: its label, its verdict (``on_error`` applied) and its error."""

    label: str
    verdict: Verdict
    error: str | None
    latency_ms: float


def _labels(specs: Sequence[GuardSpec]) -> list[str]:
    names = [s.label for s in specs]
    return [f"{n}[{i}]" if names.count(n) > 1 else n for i, n in enumerate(names)]


class EnsembleGuard:
    """Combines ``members`` (built from ``options.guards``) as ``options.mode`` says."""

    def __init__(
        self, options: EnsembleOptions, members: Sequence[Guard], threshold: float = 0.5
    ) -> None:
        self.options = options
        labels = _labels(options.guards)
        self.members = [
            Member(s, g, n) for s, g, n in zip(options.guards, members, labels, strict=True)
        ]
        self.threshold = threshold
        weights = options.weights or [1.0] * len(self.members)
        self.weights = [w / sum(weights) for w in weights]
        final = any(m.final_only for m in self.members)
        self.streaming = "final" if final else "window"

    def check(self, text: str, ctx: GuardContext) -> Verdict | Awaitable[Verdict]:
        tally = Tally(self)
        for i, member in enumerate(self.members):
            t0 = time.perf_counter()
            try:
                result = member.guard.check(text, ctx)
                if inspect.isawaitable(result):
                    rest = self._rest(tally, i, result, t0, text, ctx)
                    return Pending(rest, result)
                verdict, error = as_verdict(result), None
            except Exception as exc:  # noqa: BLE001 - a failing member takes its on_error path
                verdict, error = Verdict.fail(f"guard error: {exc!r}"), repr(exc)
            if tally.add(i, verdict, error, _ms(t0), ctx):
                break
        return tally.verdict()

    async def _rest(
        self,
        tally: Tally,
        i: int,
        pending: Awaitable[Any],
        t0: float,
        text: str,
        ctx: GuardContext,
    ) -> Verdict:
        """The run from member ``i`` on, whose check answered with ``pending``."""
        verdict, error = await settle(self.members[i], pending)
        if not tally.add(i, verdict, error, _ms(t0), ctx):
            for j in range(i + 1, len(self.members)):
                t0 = time.perf_counter()
                verdict, error = await ask(self.members[j], text, ctx)
                if tally.add(j, verdict, error, _ms(t0), ctx):
                    break
        return tally.verdict()


async def ask(member: Member, text: str, ctx: GuardContext) -> tuple[Verdict, str | None]:
    """A member's verdict on ``text`` and its error (None, ``"timeout"`` or the exception's
    repr), as the runner gets a guard's: a failing member gives a failing verdict."""
    try:
        result = member.guard.check(text, ctx)
        if not inspect.isawaitable(result):
            return as_verdict(result), None
    except Exception as exc:  # noqa: BLE001 - a failing member takes its on_error path
        return Verdict.fail(f"guard error: {exc!r}"), repr(exc)
    return await settle(member, result)


async def settle(member: Member, pending: Awaitable[Any]) -> tuple[Verdict, str | None]:
    """A member's awaited verdict within its ``latency_budget_ms``."""
    budget = member.spec.latency_budget_ms
    try:
        async with asyncio.timeout(None if budget is None else budget / 1000.0):
            return as_verdict(await pending), None
    except TimeoutError:
        return Verdict.fail(f"guard timed out after {budget} ms"), "timeout"
    except Exception as exc:  # noqa: BLE001 - a failing member takes its on_error path
        return Verdict.fail(f"guard error: {exc!r}"), repr(exc)


class Pending:
    """The rest of an ensemble's run once a member answered with an awaitable. Closing it
    (a synchronous path refuses it) also closes that member's awaitable: nothing is left
    un-awaited."""

    def __init__(self, rest: Coroutine[Any, Any, Verdict], member: Awaitable[Any]) -> None:
        self._rest = rest
        self._member = member

    def __await__(self) -> Generator[Any, None, Verdict]:
        return self._rest.__await__()

    def close(self) -> None:
        self._rest.close()
        getattr(self._member, "close", lambda: None)()


@dataclass(slots=True)
class Tally:
    """The members' verdicts so far, and what the mode makes of them."""

    guard: EnsembleGuard
    seen: list[MemberVerdict] = field(default_factory=list)

    def add(
        self, i: int, verdict: Verdict, error: str | None, ms: float, ctx: GuardContext
    ) -> bool:
        """Record member ``i``'s verdict; True when the ensemble has decided."""
        member = self.guard.members[i]
        label = member.name
        if verdict.decided_by is not None:
            label = f"{label}/{verdict.decided_by}"
        if error is not None:
            verdict = _on_error(member, verdict)
        self.seen.append(MemberVerdict(label, verdict, error, ms))
        if ctx.trace is not None:
            ctx.trace.event(
                "guard_member", member=label, passed=verdict.passed,
                score=round(verdict.score, 4), latency_ms=round(ms, 3), error=error,
            )  # fmt: skip
        mode = self.guard.options.mode
        if mode == "any":
            return not verdict.passed
        if mode == "all":
            return verdict.passed
        if mode == "cascade":
            low, high = self.guard.options.band
            return error is None and not low <= verdict.score <= high
        return False  # weighted: every member

    def verdict(self) -> Verdict:
        mode = self.guard.options.mode
        if mode == "weighted":
            return self._weighted()
        last = self.seen[-1]
        if mode == "cascade" or (mode == "any") != last.verdict.passed:
            return _decided(last.verdict, last.label)  # the member that decided
        # any: every member passed; all: every member failed
        together = "+".join(m.label for m in self.seen)
        if mode == "any":
            score = max(m.verdict.score for m in self.seen)
            return Verdict.ok(score=score, reason="every member passed", decided_by=together)
        reason = "; ".join(f"{m.label}: {m.verdict.reason}" for m in self.seen)
        score = min(m.verdict.score for m in self.seen)
        return Verdict.fail(reason, score, findings=_findings(self.seen), decided_by=together)

    def _weighted(self) -> Verdict:
        weights = self.guard.weights
        total = sum(w * m.verdict.score for w, m in zip(weights, self.seen, strict=True))
        score = round(total, 9)  # 3 * 0.7 + 1 * 0.3 over 4 reaches a threshold of 0.6
        together = "+".join(m.label for m in self.seen)
        detail = ", ".join(f"{m.label} {m.verdict.score:.2f}" for m in self.seen)
        if score >= self.guard.threshold:
            failing = [m for m in self.seen if not m.verdict.passed]
            reason = f"weighted score {score:.2f} >= {self.guard.threshold} ({detail})"
            return Verdict.fail(reason, score, findings=_findings(failing), decided_by=together)
        reason = f"weighted score {score:.2f} < {self.guard.threshold} ({detail})"
        return Verdict.ok(score=score, reason=reason, decided_by=together)


def _on_error(member: Member, verdict: Verdict) -> Verdict:
    """An errored member's verdict as its ``on_error`` says: pass (score 0) or fail."""
    if member.spec.on_error == "pass":
        return Verdict.ok(score=0.0, reason=f"{verdict.reason} (on_error: pass)")
    return Verdict.fail(verdict.reason, 1.0)


def _decided(verdict: Verdict, label: str) -> Verdict:
    reason = f"{label}: {verdict.reason}" if verdict.reason else label
    return Verdict(
        verdict.passed, verdict.score, verdict.findings, verdict.rewritten, reason,
        verdict.value, decided_by=label,
    )  # fmt: skip


def _findings(members: Sequence[MemberVerdict]) -> tuple[Finding, ...]:
    return tuple(f for m in members for f in m.verdict.findings)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0

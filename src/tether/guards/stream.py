"""Output guards on streamed text: overlapping windows, redaction mid-stream.

:class:`GuardedStream` takes the model's deltas (``feed``) and returns what may be shown now.
It holds back the last ``holdback_chars`` characters (they may still be the beginning of an
entity: ``+41 (0)96 4``...), never cuts through a finding, and re-checks ``window_chars`` of
already-sent text with every new piece so patterns spanning pieces are seen.

What a stream cannot do: **re-ask** (the user already saw the beginning) or **fall back** to
another model. A failing ``reask``/``fallback``/``block`` guard ends the stream with
:class:`~tether.errors.GuardBlocked`; ``redact`` works mid-stream; ``review``/``log`` record.
Guards that only make sense on the whole text (``json_schema``, ``topics``, ``max_length``) run
once, in ``finish`` (a failing ``log``/``review`` one only records); for a feature that needs
re-ask, do not stream to the user (buffer, then ``check_output``: the pipeline does this).

Async guards (an LLM judge, a remote classifier) need the async methods ``afeed``/``afinish``
(``filter`` and the pipeline use them); each check is bounded by the guard's
``latency_budget_ms``. ``feed``/``finish`` run the same code without an event loop, for
synchronous guards only.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

from tether.errors import GuardBlocked
from tether.guards.base import Finding, GuardContext, Verdict
from tether.guards.outcome import BoundGuard, GuardOutcome, GuardResult, run_guard, run_now
from tether.guards.redact import Redactor

if TYPE_CHECKING:  # the runner builds streams: it imports this module, never the reverse
    from tether.guards.runner import GuardRunner

SYNC_REFUSAL = "an async guard needs the async stream methods (afeed/afinish)"


class GuardedStream:
    """Feed deltas in, get guarded text out; ``finish`` flushes and runs final-only guards."""

    def __init__(self, runner: GuardRunner, ctx: GuardContext) -> None:
        self.runner = runner
        self.ctx = ctx
        ctx.stage = "output"
        if ctx.redactor is None:
            ctx.redactor = Redactor()
        self.redactor: Redactor = ctx.redactor
        cfg = runner.config.stream
        self.holdback = cfg.holdback_chars
        self.window = cfg.window_chars
        self.step = cfg.min_step_chars
        self.outcome: GuardOutcome = GuardOutcome("output", "")
        self._pending = ""  # raw model text not sent yet
        self._raw_sent = ""  # raw model text already sent (its tail is re-checked)
        self._raw = ""  # the whole raw text, for final-only guards
        self._unchecked = 0
        self.windows_checked = 0

    @property
    def text(self) -> str:
        """Everything sent so far (after redaction and restoration)."""
        return self.outcome.text

    @property
    def traced_text(self) -> str:
        """Everything sent so far with placeholders still in: what a trace may keep."""
        return self.outcome.traced_text

    def feed(self, delta: str) -> str:
        """Add a delta; return the text that may be shown now (possibly empty). Synchronous
        guards only (an async one counts as a guard error)."""
        return run_now(self._feed(delta, sync=True))

    def finish(self) -> str:
        """Flush the held-back tail and run final-only guards. Raises GuardBlocked."""
        return run_now(self._finish(sync=True))

    async def afeed(self, delta: str) -> str:
        """:meth:`feed` that also awaits async guards."""
        return await self._feed(delta, sync=False)

    async def afinish(self) -> str:
        """:meth:`finish` that also awaits async guards."""
        return await self._finish(sync=False)

    async def _feed(self, delta: str, sync: bool) -> str:
        self._pending += delta
        self._raw += delta
        self._unchecked += len(delta)
        if self._unchecked < self.step or len(self._pending) <= self.holdback:
            return ""
        return await self._process(final=False, sync=sync)

    async def _finish(self, sync: bool) -> str:
        out = await self._process(final=True, sync=sync) if self._pending else ""
        for bound in self.runner.output:
            if bound.final_only and self.runner.sampled(bound, self.ctx, "output"):
                verdict = await self._check(bound, self._raw, sync)
                if verdict.passed:
                    continue
                action = bound.spec.effective_action
                if action in ("log", "review"):
                    self.outcome.review = self.outcome.review or action == "review"
                    continue
                self._fail(bound, verdict)
        return out

    async def filter(self, deltas: AsyncIterable[str]) -> AsyncIterator[str]:
        """Guard an async stream of text deltas end to end."""
        async for delta in deltas:
            out = await self.afeed(delta)
            if out:
                yield out
        tail = await self.afinish()
        if tail:
            yield tail

    # ------------------------------------------------------------------ internals

    async def _process(self, final: bool, sync: bool) -> str:
        self._unchecked = 0
        self.windows_checked += 1
        prefix = self._raw_sent[-self.window :]
        text = prefix + self._pending
        offset = len(prefix)
        to_redact: list[Finding] = []
        for bound in self.runner.output:
            if bound.final_only or not self.runner.sampled(bound, self.ctx, "output"):
                continue
            verdict = await self._check(bound, text, sync)
            if verdict.passed:
                continue
            action = bound.spec.effective_action
            if action in ("log", "review"):
                self.outcome.review = self.outcome.review or action == "review"
                continue
            if action == "redact" and verdict.findings:
                to_redact.extend(verdict.findings)
                continue
            self._fail(bound, verdict)
        local = [
            Finding(f.type, f.start - offset, f.end - offset, f.text, f.score)
            for f in to_redact
            if f.end > offset
        ]
        cut = self._cut(local, final)
        emit = self.redactor.redact(
            self._pending[:cut], [f for f in local if f.end <= cut], reversible=False
        )
        self._raw_sent += self._pending[:cut]
        self._pending = self._pending[cut:]
        shown = self.redactor.restore(emit)
        self.outcome.redacted = (self.outcome.redacted or "") + emit
        self.outcome.text += shown
        return shown

    def _cut(self, findings: list[Finding], final: bool) -> int:
        """How much of the pending text can go out now."""
        if final:
            return len(self._pending)
        cut = max(0, len(self._pending) - self.holdback)
        for f in sorted(findings, key=lambda f: f.start):
            if f.start < cut < f.end:
                cut = max(0, f.start)
        cut -= self.redactor.partial_tail(self._pending[:cut])
        return max(cut, 0)

    async def _check(self, bound: BoundGuard, text: str, sync: bool) -> Verdict:
        t0 = time.perf_counter()
        refusal = SYNC_REFUSAL if sync else None
        verdict, error = await run_guard(bound, text, self.ctx, refuse_async=refusal)
        if error is not None and bound.spec.on_error == "pass":
            verdict = Verdict.ok()
        if not verdict.passed or error is not None:
            latency = (time.perf_counter() - t0) * 1000.0
            action = bound.spec.effective_action if not verdict.passed else "error_pass"
            result_ = GuardResult(bound.name, "output", verdict, action, latency, error=error)
            self.outcome.results.append(result_)
            self.runner.record(result_, self.ctx)
        return verdict

    def _fail(self, bound: BoundGuard, verdict: Verdict) -> None:
        action = bound.spec.effective_action
        note = ""
        if action in ("reask", "fallback"):
            note = f" ({action} is impossible once streaming has started)"
        self.outcome.decision = "block"
        self.outcome.guard = bound.name
        self.outcome.reason = verdict.reason + note
        if self.ctx.trace is not None:
            self.ctx.trace.event("guard_stream_stopped", guard=bound.name, reason=verdict.reason)
        raise GuardBlocked(
            f"output guard {bound.name} stopped the stream: {verdict.reason}{note}",
            guard=bound.name,
            stage="output",
        )

"""A feature's guards as two pipeline stages: :class:`InputGuards` (slot ``input``) and
:class:`OutputGuards` (slot ``output``), both present whenever the feature declares guards.

:class:`CallGuards` is one call's view of its feature's :class:`~tether.guards.GuardRunner`:
the runner (built once per feature) plus this call's :class:`~tether.guards.GuardContext`
(trace, redaction map, re-ask count), shared by the two stages (output guards restore what the
input guards redacted). It decides

* **what input guards check**: every message the caller supplies, whatever its role (system,
  developer, user, assistant, tool): its content (or, for a message with image, audio or file
  parts, each of its text parts: the verdict's part is ``parts.N.text``) and each tool call's
  arguments, each text checked on its own, after the feature's
  template was rendered (so ``Q: {{ message }}`` is checked as ``Q: <the message>``). Tool
  results and retrieved documents are where indirect injection arrives, so they are checked
  too. Only the feature's own system prompt is not (``CompiledFeature.own_messages``: the
  leading message a feature adds, when its template renders no variable; one that renders the
  caller's variables carries the caller's text and is checked). A guard's ``roles:`` narrows
  the roles it checks. Redaction rewrites each text, with one placeholder map for the whole
  call, so the same e-mail is ``<EMAIL_1>`` in every turn and in tool arguments; each verdict
  on the trace names the message's index, role and part;
* **where a fallback goes**: the call's :class:`~tether.resilience.chain.Chain` from a position
  on (``Chain.from_position``), so a ``fallback`` verdict skips the model that produced the bad
  answer (its ``ModelResponse.position``; output) or the primary model (input: e.g. keep
  personal data on the local model that comes second in the chain);
* **how a re-ask is asked**: the request that got the rejected answer, that answer as an
  assistant turn, and the guard's message (the validation error) as a user turn; a second
  re-ask builds on the first, so the model sees every answer it gave;
* **whether a stream can be guarded on the fly** (:func:`needs_whole_answer`): output guards
  that may re-ask or fall back, or that judge only the whole text (``json_schema``, ``topics``,
  ``max_length``), need the whole answer before the caller sees any of it; the others filter
  the stream as it passes (:class:`GuardedStream`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from tether.errors import GuardBlocked
from tether.guards import GuardContext, GuardedStream, GuardOutcome, GuardRunner
from tether.pipeline.call import Answer, Call
from tether.pipeline.stages import Slot, Stage
from tether.types import Message, ModelRequest, ModelResponse

if TYPE_CHECKING:
    from tether.resilience.chain import Chain

QUIET_ACTIONS = ("log", "review")


class InputGuards(Stage):
    """Slot ``input``: the input guards check what the caller sent before anything else
    spends on it; the model is asked the request as they leave it, from where they say."""

    slot: Slot = "input"
    applies_to_embeddings = True  # every input text of an embedding call is checked too

    def __init__(self, runner: GuardRunner) -> None:
        self.runner = runner

    async def before(self, call: Call) -> Answer | None:
        guards = call.guards = CallGuards(self.runner, call)
        call.request = await guards.check_input(call.request)  # block raises; redact; fallback
        if guards.start:
            call.model = guards.model_at(guards.start)
        return None


class OutputGuards(Stage):
    """Slot ``output``: the output guards judge the answer before review and the budget's
    settle see it; a ``reask`` asks the model that answered again with the validation error
    (at most ``max_reasks`` times, then it blocks), a ``fallback`` asks the next model in the
    chain, ``block`` raises GuardBlocked. Every model call is an attempt on the trace."""

    slot: Slot = "output"

    def __init__(self, runner: GuardRunner) -> None:
        self.runner = runner
        self.whole_answer = needs_whole_answer(runner)

    async def after(self, call: Call, answer: Answer) -> Answer:
        guards = guards_of(call, self.runner)
        response, request = answer.response, call.request
        while True:
            outcome = await guards.check_output(response)
            if outcome.decision == "reask":
                request = guards.reask(request, response.text, outcome)
                position = response.position
            elif outcome.decision == "fallback":
                position = guards.fallback(outcome, response.position)
                request = call.request
            else:
                outcome.raise_for_decision()
                return Answer(response, outcome.text, outcome.traced_text, outcome.value)
            response = await guards.model_at(position).complete(request, call.ctx)

    def stream_filter(self, call: Call) -> Shield:
        return Shield(guards_of(call, self.runner).output_stream())


def guards_of(call: Call, runner: GuardRunner) -> CallGuards:
    """The call's guards: the input stage made them (a feature with guards has both stages)."""
    if call.guards is None:
        call.guards = CallGuards(runner, call)
        call.guards.ctx.system_prompt = system_text(call.request.messages)
    return call.guards


class Shield:
    """The output guards on a stream, as it passes (or, with nothing to check or restore, the
    text as it came)."""

    def __init__(self, stream: GuardedStream | None) -> None:
        self.stream = stream

    async def feed(self, text: str) -> str:
        return text if self.stream is None else await self.stream.afeed(text)

    async def finish(self) -> str:
        return "" if self.stream is None else await self.stream.afinish()

    def answer(self, answer: Answer) -> Answer:
        shield = self.stream
        if shield is None:
            return answer
        return Answer(answer.response, shield.text, shield.traced_text, shield.outcome.value)


def needs_whole_answer(runner: GuardRunner) -> bool:
    """Whether the output guards must see the whole answer before the caller sees any."""
    return any(
        bound.spec.effective_action in ("reask", "fallback")
        or (bound.final_only and bound.spec.effective_action not in QUIET_ACTIONS)
        for bound in runner.output
    )


class CallGuards:
    """A feature's guards applied to one call (the chain as the call asks it)."""

    def __init__(self, runner: GuardRunner, call: Call) -> None:
        self.runner = runner
        self.chain: Chain = call.model
        self.own = call.feature.own_messages  # leading messages: the feature's own prompt
        self.trace = trace = call.trace
        self.ctx = GuardContext(feature=call.feature.name, trace=trace)
        self.request: ModelRequest | None = None  # what the model is asked, after input guards
        # (message index, part) of the texts a pii guard left clean in self.request
        self.pii_clean: frozenset[tuple[int, str]] = frozenset()
        self._clean: set[tuple[int, str]] = set()
        self.start = 0  # the chain position the first model call starts at

    # ------------------------------------------------------------------ input

    async def check_input(self, request: ModelRequest) -> ModelRequest:
        """Run the input guards over every text of every caller message; return the request the
        model may see. The feature's own leading messages (its system prompt, when it renders
        no variable: ``CompiledFeature.own_messages``) are not checked.

        ``block`` raises :class:`GuardBlocked`; ``redact`` puts placeholders in the messages;
        ``fallback`` makes the call start at the chain's next model; ``review``/``log`` only
        record (the runner puts every verdict on the trace, with the message's index and role).
        """
        self.request = request  # what was asked, should a guard block below
        messages = list(request.messages)
        self.ctx.system_prompt = system_text(messages)
        fallback: GuardOutcome | None = None
        changed = False
        for i in range(self.own, len(messages)):
            checked, outcome = await self._check_message(i, messages[i])
            if outcome is not None and fallback is None:
                fallback = outcome
            if checked is not messages[i]:
                messages[i], changed = checked, True
        self.ctx.role = self.ctx.message_index = self.ctx.part = None  # the answer is no message
        if changed:
            request = dataclasses.replace(request, messages=messages)
            self.ctx.system_prompt = system_text(messages)  # as the model sees it
        self.request, self.pii_clean = request, frozenset(self._clean)
        if fallback is not None:
            self.start = self.fallback(fallback, 0)
        return request

    async def _check_message(
        self, index: int, message: Message
    ) -> tuple[Message, GuardOutcome | None]:
        """One caller message's texts checked, each on its own: its content (every text part,
        joined by the gateway) and each tool call's arguments. Returns the message as the model
        may see it (the same object when nothing changed) and the first ``fallback`` verdict."""
        ctx = self.ctx
        ctx.role, ctx.message_index = message.role, index
        fallback: GuardOutcome | None = None
        content, parts = message.content, message.parts
        if parts is not None:
            parts, fallback = await self._check_parts(parts)
            if parts is not message.parts:
                content = "".join(p["text"] for p in parts if p.get("type") == "text")
        elif content:
            ctx.part = "content"
            outcome = await self.runner.acheck_input(content, ctx)
            self._note_pii(outcome)
            outcome.raise_for_decision()
            fallback = outcome if outcome.decision == "fallback" else None
            content = outcome.text
        calls = list(message.tool_calls or [])
        for n, call in enumerate(calls):
            if not call.arguments:
                continue
            ctx.part = f"tool_calls.{n}.arguments"
            outcome = await self.runner.acheck_input(call.arguments, ctx)
            self._note_pii(outcome)
            outcome.raise_for_decision()
            if outcome.decision == "fallback" and fallback is None:
                fallback = outcome
            if outcome.text != call.arguments:
                calls[n] = dataclasses.replace(call, arguments=outcome.text)
        if (
            content == message.content
            and parts is message.parts
            and calls == (message.tool_calls or [])
        ):
            return message, fallback
        changed = dataclasses.replace(
            message, content=content, tool_calls=calls or None, parts=parts
        )
        return changed, fallback

    async def _check_parts(
        self, parts: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], GuardOutcome | None]:
        """A message's text parts (next to its images, audio or files), each checked on its
        own (``part`` on the verdict: ``parts.N.text``); the parts as the model may see them
        (the same list when nothing changed) and the first ``fallback`` verdict."""
        ctx, out = self.ctx, parts
        fallback: GuardOutcome | None = None
        for n, part in enumerate(parts):
            text = part.get("text") if part.get("type") == "text" else None
            if not isinstance(text, str) or not text:
                continue
            ctx.part = f"parts.{n}.text"
            outcome = await self.runner.acheck_input(text, ctx)
            self._note_pii(outcome)
            outcome.raise_for_decision()
            if outcome.decision == "fallback" and fallback is None:
                fallback = outcome
            if outcome.text != text:
                out = list(out) if out is parts else out
                out[n] = {**part, "text": outcome.text}
        return out, fallback

    def _note_pii(self, outcome: GuardOutcome) -> None:
        """Remember a text the pii guard found clean or redacted, so the trace's capture does
        not run the detector over it a second time."""
        if any(
            r.guard == "pii" and r.error is None and (r.verdict.passed or r.action == "redact")
            for r in outcome.results
        ):
            assert self.ctx.message_index is not None and self.ctx.part is not None
            self._clean.add((self.ctx.message_index, self.ctx.part))

    # ------------------------------------------------------------------ model

    def model_at(self, position: int) -> Chain:
        """The call's chain from ``position`` on (fallback() checked that it exists)."""
        if not 0 <= position < len(self.chain):
            raise GuardBlocked(f"no model at position {position} of the chain")
        return self.chain.from_position(position)

    def fallback(self, outcome: GuardOutcome, position: int) -> int:
        """The chain position after ``position``; GuardBlocked when the chain ends there."""
        names = self.chain.names
        following = position + 1
        if following >= len(names):
            raise GuardBlocked(
                f"{outcome.stage} guard {outcome.guard}: {outcome.reason} (its action is "
                f"fallback, and {names[min(position, len(names) - 1)]} is the last model in the "
                "chain; add one under fallbacks)",
                guard=outcome.guard,
                stage=outcome.stage,
            )
        self.trace.event(
            "fallback",
            frm=names[position],
            to=names[following],
            reason="guard_fallback",
            guard=outcome.guard,
            stage=outcome.stage,
        )
        return following

    def reask(self, request: ModelRequest, answer: str, outcome: GuardOutcome) -> ModelRequest:
        """The request that got ``answer``, then the answer and what was wrong with it (so a
        second re-ask shows the model both of its rejected answers)."""
        assert outcome.reask_message is not None
        self.ctx.reasks += 1
        self.trace.event(
            "reask", guard=outcome.guard, number=self.ctx.reasks, reason=outcome.reason
        )
        messages = [
            *request.messages,
            Message("assistant", answer),
            Message("user", outcome.reask_message),
        ]
        return dataclasses.replace(request, messages=messages)

    # ------------------------------------------------------------------ output

    async def check_output(self, response: ModelResponse) -> GuardOutcome:
        """The output guards' decision on an answer; its ``text`` has the originals back. An
        answer that is only tool calls has no text to guard (its arguments are not checked)."""
        if response.tool_calls and not response.text:
            return GuardOutcome("output", "")
        return await self.runner.acheck_output(response.text, self.ctx)

    def output_stream(self) -> GuardedStream | None:
        """Output guards on the fly (and placeholders restored), or None when nothing to do."""
        redactor = self.ctx.redactor
        if self.runner.output or (redactor is not None and len(redactor)):
            return self.runner.stream(self.ctx)
        return None


def system_text(messages: list[Message]) -> str | None:
    """What ``system_prompt_leak`` compares the answer with: every system message the model
    sees, the feature's own prompt and a caller's (an application that sends its prompt per
    call wants it kept from its users too); a caller's own text can only make its answer
    stricter."""
    return (
        "\n".join(m.content for m in messages if m.role in ("system", "developer") and m.content)
        or None
    )

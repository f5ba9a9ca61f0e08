"""Stages: what a feature does around its model call, each in a named slot.

A :class:`Stage` has three hooks, each a no-op unless it overrides it::

    before(call)          -> None to go on, or an Answer to answer without the model (a cache
                             hit); raise a TetherError to end the call in its failure path (a
                             budget refusal, a blocking guard)
    after(call, answer)   -> the answer as the caller should get it (redacted, held for review);
                             raising takes the failure path too
    failed(call, error)   -> the call ended without an answer (the failure path runs next)

A feature's stages are ordered by :data:`SLOTS` (stages sharing a slot keep their order, the
feature's guards first). ``before`` runs in that order, then the model, then ``after`` in the
reverse order, like layers around the model: every stage whose ``before`` went on gets exactly
one ``after`` or one ``failed``. A stage that answers in ``before`` skips the stages after it
and the model, and gets no ``after`` itself (the stages before it do). An error in an ``after``
gives the stages outside it ``failed`` instead. A call that ends otherwise (cancelled, a caller
that stops reading a stream) gives them ``failed`` with reason ``cancelled``.

Slots, outermost first::

    rollout   the variant is already on the trace (VariantPicker); a stage here sees it first
    input     input guards: block, redact, or start the chain further on
    budget    reserve before the model, settle after (or on failure: attempts may have cost)
    review    after: route an answer to human review (may hold it: return another answer)
    output    output guards: redact, re-ask, fall back, block
    cache     before: look up (a hit answers); after: store the model's answer

So an answer comes back out through the output guards before review and the budget's settle,
and a cached answer is guarded like a fresh one.

Streams run the same hooks. An answer is streamed on the fly unless a stage sets
``whole_answer`` (its ``after`` must see the whole answer before the caller sees any of it,
e.g. output guards that may re-ask) or answers in ``before``: then it comes in one piece once
every ``after`` ran. On the fly, a stage may put a :class:`StreamFilter` in the way of the text
(``stream_filter``); the filter's ``answer`` then stands in for the stage's ``after``. Every
other stage's ``after`` sees the whole answer once the stream ended (what it returns goes to
the Result and the trace: the caller has seen the text already).

Add stages with ``Tether(stages=[...])``: they run for every feature (a stage that concerns
some features checks ``call.feature.name``). An embedding feature (``kind: embedding``) runs
only the stages that set ``applies_to_embeddings``: its answers are vectors (``Answer.vectors``,
no text) and its request is the inputs, one user message each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, Protocol

from tether.telemetry.trace import Trace

if TYPE_CHECKING:
    from tether.errors import TetherError
    from tether.pipeline.call import Answer, Call
    from tether.pipeline.feature import CompiledFeature

Slot = Literal["rollout", "input", "budget", "review", "output", "cache"]
SLOTS: tuple[Slot, ...] = ("rollout", "input", "budget", "review", "output", "cache")


class StreamFilter(Protocol):
    """The text of a stream relayed on the fly, passing one stage (output guards redact it)."""

    async def feed(self, text: str) -> str:
        """A delta in; what may be shown now (it may hold back a tail)."""
        ...

    async def finish(self) -> str:
        """The stream ended: the held-back tail (raise a TetherError to end it in error)."""
        ...

    def answer(self, answer: Answer) -> Answer:
        """The whole answer as this stage leaves it (stands in for the stage's ``after``)."""
        ...


class Stage(Protocol):
    """Something a feature does before its model call, after it, or when it fails. Subclass
    it and override what you need (every hook defaults to doing nothing); set ``slot``."""

    slot: Slot
    whole_answer: bool = False  # a stream must be answered in one piece once after() ran
    applies_to_embeddings: bool = False  # runs on embedding calls too (answers with vectors)

    async def before(self, call: Call) -> Answer | None:
        return None

    async def after(self, call: Call, answer: Answer) -> Answer:
        return answer

    async def failed(self, call: Call, error: TetherError) -> None:
        return None

    def stream_filter(self, call: Call) -> StreamFilter | None:
        return None


def arrange(stages: Iterable[Stage]) -> tuple[Stage, ...]:
    """Stages in slot order; stages sharing a slot keep the order given (a stable sort)."""
    ordered = list(stages)
    for stage in ordered:
        if stage.slot not in SLOTS:
            raise ValueError(
                f"stage {type(stage).__name__} has slot {stage.slot!r}; use one of "
                f"{', '.join(SLOTS)}"
            )
    return tuple(sorted(ordered, key=lambda stage: SLOTS.index(stage.slot)))


class VariantPicker(Protocol):
    """Decides which variant of a feature a call runs (``trace.variant``, ``result.variant``),
    when the call starts. ``trace`` has the feature's name, the user and the metadata."""

    def pick(self, feature: CompiledFeature, trace: Trace) -> str: ...


class Baseline:
    """The default :class:`VariantPicker`: every call runs the feature as declared."""

    def pick(self, feature: CompiledFeature, trace: Trace) -> str:
        return "default"

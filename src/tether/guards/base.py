"""The guard protocol: one method that inspects text and returns a :class:`Verdict`.

A guard is anything with ``check(text, ctx)``. It may return a :class:`Verdict` directly (CPU
guards) or an awaitable of one (a custom guard that calls a service); the runner awaits it on
its async path. What happens when a verdict fails is not the guard's business: the feature's
config names the action (``block``, ``redact``, ``reask``, ``fallback``, ``review``, ``log``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from tether.config.guards import GuardAction

if TYPE_CHECKING:
    from tether.guards.redact import Redactor
    from tether.telemetry.trace import Trace

__all__ = ["Finding", "Guard", "GuardAction", "GuardContext", "Stage", "Verdict"]

Stage = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a guard found: its type (``EMAIL_ADDRESS``, ``override`` ...) and its span."""

    type: str
    start: int
    end: int
    text: str = ""
    score: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        """The span without the matched text (safe to put in a trace)."""
        return {"type": self.type, "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class Verdict:
    """A guard's answer. ``score`` runs from 0 (clean) to 1 (certainly bad); ``rewritten`` is
    the repaired text when the guard can fix it; ``value`` a typed result (parsed JSON);
    ``decided_by`` which member of an ensemble decided (on the trace's guard event)."""

    passed: bool
    score: float = 0.0
    findings: tuple[Finding, ...] = ()
    rewritten: str | None = None
    reason: str = ""
    value: Any = None
    decided_by: str | None = None

    @classmethod
    def ok(cls, score: float = 0.0, **kw: Any) -> Verdict:
        return cls(passed=True, score=score, **kw)

    @classmethod
    def fail(cls, reason: str, score: float = 1.0, **kw: Any) -> Verdict:
        return cls(passed=False, score=score, reason=reason, **kw)


@dataclass(slots=True)
class GuardContext:
    """Per-call state: what a guard may know besides the text, plus the call's trace and its
    redaction map (created on first use, shared by the input and the output checks). During an
    input check of a request, ``role``, ``message_index`` and ``part`` say which text of which
    caller message is being checked."""

    stage: Stage = "input"
    feature: str = ""
    system_prompt: str | None = None
    canaries: tuple[str, ...] = ()
    reasks: int = 0
    trace: Trace | None = None
    redactor: Redactor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # which caller message an input check is looking at (None for the answer, or a bare text)
    role: str | None = None
    message_index: int | None = None
    part: str | None = None  # "content", or "tool_calls.N.arguments"


@runtime_checkable
class Guard(Protocol):
    """Inspect ``text`` and say whether it may pass."""

    def check(self, text: str, ctx: GuardContext) -> Verdict | Awaitable[Verdict]: ...


def as_verdict(result: Any) -> Verdict:
    """A guard's answer as a verdict (a custom guard may answer a bool: True = passed)."""
    if isinstance(result, Verdict):
        return result
    if isinstance(result, bool):
        return Verdict.ok() if result else Verdict.fail("custom guard said no")
    raise TypeError(f"a guard returned {type(result).__name__}; return a Verdict or a bool")

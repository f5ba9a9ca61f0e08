"""What a trace keeps of what was asked: a feature's ``trace: {capture, max_chars}``.

A trace always kept the answer; it also keeps the request, so a call can be read back, and
turned into an eval case, later. :meth:`Capture.record` runs once per call, when the call ends,
and sets ``trace.input``::

    {"capture": "full", "messages": [{"role": "user", "content": "..."}, ...],
     "variables": {"message": "..."}, "truncated": false}

* ``full``: the messages the model was sent (after the input guards: placeholders where a
  ``pii`` guard redacted) and the call's variables. A feature with a ``pii`` guard whose action
  is ``redact`` keeps only redacted text: the ``pii`` detector also runs over every text the
  guards did not rewrite (variables, messages a ``roles:`` setting skipped, a request a guard
  blocked) and over the answer, with the call's own placeholder map, so the trace never holds an
  original the guard would have hidden.
* ``redacted``: the same, with the ``pii`` detector run over every text even when the feature
  has no ``pii`` guard (the feature's ``pii`` options when it has one).
* ``metadata``: no text at all (``trace.output`` is dropped too): per message its role and
  length, the number and total length of the variables, the answer's length.

``max_chars`` caps the captured text of one call: the variables first, then the messages from
the newest back (the question outweighs old history); the answer has a cap of its own. A text
that is cut ends with ``…[cut N of M chars]`` and ``truncated`` is true.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tether.config.guards import PiiOptions
from tether.config.models import FeatureConfig
from tether.guards.redact import Redactor
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

if TYPE_CHECKING:
    from tether.guards.builtin.pii import PiiDetector
    from tether.guards.runner import GuardRunner

Mode = Literal["full", "redacted", "metadata"]


@dataclass(slots=True)
class Capture:
    """One feature's capture setting, with the ``pii`` detector it redacts with (if any)."""

    mode: Mode
    max_chars: int
    detector: PiiDetector | None = None

    @classmethod
    def for_feature(cls, config: FeatureConfig, runner: GuardRunner | None) -> Capture:
        mode = config.trace.capture
        specs = [*config.guards.input, *config.guards.output]
        pii = [s for s in specs if s.name == "pii"]
        redacts = any(s.effective_action == "redact" for s in pii)
        detector = None
        if mode == "redacted" or (mode == "full" and redacts):
            detector = _runner_detector(runner) or _detector(pii[0].options if pii else {})
        return cls(mode, config.trace.max_chars, detector)

    def record(
        self,
        trace: Trace,
        request: ModelRequest,
        variables: Mapping[str, Any],
        redactor: Redactor | None = None,
        clean: Collection[tuple[int, str]] = (),
    ) -> None:
        """Set ``trace.input`` (and cap or redact ``trace.output``) for this feature's mode.
        ``clean`` names the texts (message index, part) a ``pii`` guard already redacted or
        found clean with the call's ``redactor``: the detector does not run over them again."""
        if self.mode == "metadata":
            trace.input = _sizes(request, variables, trace.output)
            trace.output = None
            return
        texts = _Texts(self.max_chars, self.detector, redactor or Redactor())
        kept_variables = texts.value(variables)
        last = len(request.messages) - 1
        messages = [
            _message(m, texts, last - i, clean) for i, m in enumerate(reversed(request.messages))
        ]
        messages.reverse()
        truncated = texts.cut
        if trace.output is not None:
            answer = _Texts(self.max_chars, self.detector, texts.redactor, reversible=False)
            trace.output = answer.text(trace.output)
            truncated = truncated or answer.cut
        trace.input = {
            "capture": self.mode,
            "messages": messages,
            "variables": kept_variables,
            "truncated": truncated,
        }


class _Texts:
    """Redacts (when there is a detector) and cuts the texts of one capture, in order, within
    one budget of characters."""

    def __init__(
        self,
        budget: int,
        detector: PiiDetector | None,
        redactor: Redactor,
        *,
        reversible: bool = True,
    ) -> None:
        self.budget = budget
        self.detector = detector
        self.redactor = redactor
        self.reversible = reversible
        self.cut = False

    def text(self, text: str, *, detect: bool = True) -> str:
        if detect and self.detector is not None and text:
            findings = self.detector.find(text)
            if findings:
                text = self.redactor.redact(text, findings, reversible=self.reversible)
        if len(text) <= self.budget:
            self.budget -= len(text)
            return text
        keep, self.budget, self.cut = self.budget, 0, True
        return f"{text[:keep]}…[cut {len(text) - keep} of {len(text)} chars]"

    def value(self, value: Any) -> Any:
        """A variable's value: strings redacted and cut, containers walked, atoms kept."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return {str(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return self.text(str(value))


def _message(
    message: Message, texts: _Texts, index: int, clean: Collection[tuple[int, str]]
) -> dict[str, Any]:
    content = message.content
    view: dict[str, Any] = {
        "role": message.role,
        "content": None
        if content is None
        else texts.text(content, detect=(index, "content") not in clean),
    }
    if message.tool_calls:
        view["tool_calls"] = [
            {
                "id": c.id,
                "name": c.name,
                "arguments": texts.text(
                    c.arguments, detect=(index, f"tool_calls.{n}.arguments") not in clean
                ),
            }
            for n, c in enumerate(message.tool_calls)
        ]
    if message.tool_call_id is not None:
        view["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        view["name"] = message.name
    return view


def _sizes(
    request: ModelRequest, variables: Mapping[str, Any], output: str | None
) -> dict[str, Any]:
    """``metadata``: counts and lengths only, never a text (nor a variable's name)."""
    messages = [
        {
            "role": m.role,
            "chars": len(m.content or ""),
            "tool_calls": len(m.tool_calls or ()),
        }
        for m in request.messages
    ]
    return {
        "capture": "metadata",
        "messages": messages,
        "variables": {"count": len(variables), "chars": _chars(variables)},
        "output_chars": None if output is None else len(output),
    }


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_chars(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_chars(v) for v in value)
    return 0 if value is None or isinstance(value, bool | int | float) else len(str(value))


def _runner_detector(runner: GuardRunner | None) -> PiiDetector | None:
    """The detector of the feature's own ``pii`` guard (built once, NER included)."""
    from tether.guards.builtin.pii import PiiGuard

    for bound in [*runner.input, *runner.output] if runner is not None else []:
        if isinstance(bound.guard, PiiGuard):
            return bound.guard.detector
    return None


def _detector(options: Mapping[str, Any]) -> PiiDetector:
    from tether.guards.builtin.pii import PiiGuard

    return PiiGuard(PiiOptions.model_validate(options)).detector

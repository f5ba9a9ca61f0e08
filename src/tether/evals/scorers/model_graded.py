"""Model-graded scorers (LLM-as-judge), with promptfoo's meaning:

* ``llm-rubric`` (alias ``judge``): the value is a rubric; the output passes when what the
  rubric states is true of it. With ``threshold``, it also needs a score of at least that.
* ``model-graded-closedqa``: the value is a criterion; the judge reasons, then says Y or N.
* ``factuality``: the value is the reference answer (without one, the row's ``expected``); the
  judge puts the output in one of five categories (A subset, B superset, C same, D
  disagreement, E immaterial difference); only D fails unless the ``factuality`` option
  (``{subset, superset, agree, disagree, differButFactual}``: each category's score) says so.

The value may use the case's variables (``{{ question }}``). Options, as promptfoo writes them:
``provider`` (the judge, ``provider:model`` of any configured provider; default
``evals.judge.model``, else the feature's model) and ``rubricPrompt`` (the judge's prompt: a
list of ``{role, content}`` messages, a string, or ``file://path``; it may use ``output``,
``rubric``, ``input``, ``criteria``, ``ideal``, ``completion`` and the case's variables).

Each :class:`~tether.evals.types.Score` carries what judging cost (``Score.judge``), apart from
the feature's own calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from tether.config.features import split_model_ref
from tether.errors import ConfigError, DatasetError, ProviderError, TetherError
from tether.evals.judge import (
    Judge,
    JudgeAnswer,
    Verdict,
    closedqa_verdict,
    factuality_scores,
    factuality_verdict,
    judge_for,
    judge_model,
    rubric_verdict,
)
from tether.evals.scorers.base import Factory
from tether.evals.types import Assertion, Case, JudgeUsage, Output, Score, ScoringContext
from tether.types import Message, Role

Template = tuple[tuple[Role, str], ...]  # (role, content template) per message
ROLES: tuple[Role, ...] = ("system", "user", "assistant")

RUBRIC_PROMPT: Template = (
    (
        "system",
        "You grade an output against a rubric. The output passes when what the rubric states "
        "is true of it. Answer with one JSON object and nothing else:\n"
        '{"reason": "<one short sentence>", "pass": true or false, "score": <0.0 to 1.0>}\n\n'
        "Examples:\n\n"
        "<Output>Bonjour, comment puis-je vous aider ?</Output>\n"
        "<Rubric>Is written in French</Rubric>\n"
        '{"reason": "The output is a French sentence.", "pass": true, "score": 1.0}\n\n'
        "<Output>The capital of Australia is Sydney.</Output>\n"
        "<Rubric>States the capital of Australia correctly</Rubric>\n"
        '{"reason": "The capital of Australia is Canberra.", "pass": false, "score": 0.0}',
    ),
    ("user", "<Output>\n{{ output }}\n</Output>\n<Rubric>\n{{ rubric }}\n</Rubric>"),
)
RUBRIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 300},
        "pass": {"type": "boolean"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["reason", "pass", "score"],
    "additionalProperties": False,
}

CLOSEDQA_PROMPT: Template = (
    (
        "system",
        "You decide whether a submitted answer to a task meets a criterion.",
    ),
    (
        "user",
        "[Task]\n{{ input }}\n\n[Submission]\n{{ completion }}\n\n[Criterion]\n{{ criteria }}\n\n"
        "Does the submission meet the criterion? First reason about it step by step, without "
        "stating your conclusion at the start. Then write a last line holding only the letter "
        "Y (it meets the criterion) or N (it does not).",
    ),
)
CLOSEDQA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "maxLength": 400},
        "answer": {"type": "string", "enum": ["Y", "N"]},
    },
    "required": ["reasoning", "answer"],
    "additionalProperties": False,
}

FACTUALITY_PROMPT: Template = (
    (
        "system",
        "You compare the facts of a submitted answer with a reference answer written by an "
        "expert, ignoring differences of style, grammar and punctuation. Put the submission in "
        "exactly one category:\n"
        "(A) it is a subset of the reference and fully consistent with it;\n"
        "(B) it is a superset of the reference and fully consistent with it;\n"
        "(C) it contains the same details as the reference;\n"
        "(D) it disagrees with the reference;\n"
        "(E) the answers differ, but the differences do not matter for factuality.\n"
        'Answer with one JSON object and nothing else: {"category": "<A, B, C, D or E>", '
        '"reason": "<why>"}',
    ),
    (
        "user",
        "<question>\n{{ input }}\n</question>\n\n<reference_answer>\n{{ ideal }}\n"
        "</reference_answer>\n\n<submitted_answer>\n{{ completion }}\n</submitted_answer>",
    ),
)
FACTUALITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["A", "B", "C", "D", "E"]},
        "reason": {"type": "string", "maxLength": 300},
    },
    "required": ["category", "reason"],
    "additionalProperties": False,
}

Reader = Callable[[str, Assertion], Verdict]


@dataclass(frozen=True, slots=True)
class Grader:
    """One model-graded assert type: its default prompt, the JSON schema a constrained judge
    answers in, how its answer is read, and the names its prompt gives the value, the output
    and the task."""

    type: str
    prompt: Template
    schema: Mapping[str, Any]
    read: Reader
    value_name: str
    output_name: str
    expected_is_value: bool = False  # without a value, the case's ``expected`` is the value


def _read_rubric(text: str, assertion: Assertion) -> Verdict:
    verdict = rubric_verdict(text)
    threshold = assertion.threshold
    if threshold is not None and verdict.passed and verdict.score < threshold:
        reason = f"score {verdict.score:g} is below the threshold {threshold:g}: {verdict.reason}"
        return Verdict(False, verdict.score, reason)
    return verdict


def _read_factuality(text: str, assertion: Assertion) -> Verdict:
    options = assertion.options.get("factuality")
    return factuality_verdict(
        text, factuality_scores(options if isinstance(options, Mapping) else None)
    )


LLM_RUBRIC = Grader("llm-rubric", RUBRIC_PROMPT, RUBRIC_SCHEMA, _read_rubric, "rubric", "output")
CLOSEDQA = Grader(
    "model-graded-closedqa",
    CLOSEDQA_PROMPT,
    CLOSEDQA_SCHEMA,
    lambda text, _: closedqa_verdict(text),
    "criteria",
    "completion",
)
FACTUALITY = Grader(
    "factuality",
    FACTUALITY_PROMPT,
    FACTUALITY_SCHEMA,
    _read_factuality,
    "ideal",
    "completion",
    expected_is_value=True,
)


# ---------------------------------------------------------------------------- prompts


def _messages_of(value: Any, where: str) -> Template:
    """A ``rubricPrompt`` as (role, content) templates: a list of ``{role, content}``, one
    such dict, a JSON string of either, or plain text (one user message)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return (("user", value),)
        if not isinstance(parsed, list | dict):
            return (("user", value),)
        value = parsed
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, Sequence) or not items:
        raise DatasetError(f"{where}: rubricPrompt must be text or a list of {{role, content}}")
    out: list[tuple[Role, str]] = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("content"), str):
            raise DatasetError(
                f"{where}: each rubricPrompt message needs a role and a string content, "
                f"got {item!r}"
            )
        role = str(item.get("role") or "user")
        if role not in ROLES:
            raise DatasetError(f"{where}: a rubricPrompt message's role must be one of {ROLES}")
        out.append((role, item["content"]))
    return tuple(out)


def load_prompt(value: Any, base_dir: Path, where: str) -> Template:
    """A ``rubricPrompt`` option as (role, content) templates; ``file://path`` is read
    relative to ``base_dir`` (JSON or YAML files hold messages, others are text)."""
    if isinstance(value, str) and value.startswith("file://"):
        path = base_dir / value[len("file://") :]
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise DatasetError(
                f"{where}: rubricPrompt {value} could not be read ({exc.strerror}); the path is "
                f"relative to {base_dir}"
            ) from None
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return _messages_of(yaml.safe_load(text), where)
        return _messages_of(text, where)
    return _messages_of(value, where)


def render(
    env: SandboxedEnvironment, template: str, variables: Mapping[str, Any], where: str
) -> str:
    """``template`` rendered with ``variables`` (an unknown variable renders empty)."""
    try:
        return env.from_string(template).render(dict(variables))
    except TemplateError as exc:
        raise DatasetError(f"{where}: the template could not be rendered ({exc})") from None


def task_text(case: Case, output: Output, ctx: ScoringContext) -> str:
    """What the feature was asked: the case's last user message, else the feature's prompt
    rendered with the case's variables (the variant that answered), else the variables."""
    if case.messages:
        users = [m for m in case.messages if m.get("role") == "user"] or list(case.messages)
        content = users[-1].get("content")
        return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if ctx.tether is not None and ctx.feature is not None:
        try:
            feature = ctx.tether.pipeline.feature(ctx.feature).variant(output.variant)
            request = feature.build_request(case.vars)
            return request.messages[-1].content or ""
        except TetherError:  # the variables do not render the prompt: show them instead
            pass
    if len(case.vars) == 1:
        return str(next(iter(case.vars.values())))
    return "\n".join(f"{key}: {value}" for key, value in case.vars.items())


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------- the scorer


class ModelGraded:
    """One model-graded assert of one case: renders its prompt, asks the judge, reads the
    verdict. Never raises for a judgement it could not make: the score fails with the reason."""

    def __init__(self, grader: Grader, assertion: Assertion, ctx: ScoringContext) -> None:
        self.name = assertion.name
        self.grader = grader
        self.assertion = assertion
        self.ctx = ctx
        where = f"assert {assertion.type}"
        option = assertion.options.get("rubricPrompt")
        if assertion.value in (None, "") and not (option or grader.expected_is_value):
            raise DatasetError(
                f"{where}: needs a value (the {grader.value_name}), e.g. "
                f"{{type: {assertion.type}, value: ...}} or --scorer {assertion.base_type}:..."
            )
        self.prompt = grader.prompt if not option else load_prompt(option, ctx.base_dir, where)
        self.env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
        self.judge: Judge | None = None
        self.model: str | None = None
        if ctx.tether is not None:  # check the judge now: a typo fails the run at its start
            try:
                self.model = judge_model(ctx, assertion.options.get("provider"))
                ctx.tether.provider(split_model_ref(self.model)[0])  # declared (no network)
                self.judge = judge_for(ctx)
            except ConfigError as exc:
                raise DatasetError(f"{where}: {exc}") from None

    def _value(self, case: Case) -> Any:
        """The assert's value as written; without one, the case's ``expected`` where the type
        takes it (factuality's reference answer)."""
        written = self.assertion.value
        if written in (None, "") and self.grader.expected_is_value:
            return case.expected
        return written

    def messages(self, case: Case, output: Output) -> list[Message]:
        """The judge's prompt for this case and output."""
        where = f"assert {self.assertion.type}"
        value = render(self.env, _text(self._value(case)), case.vars, where)
        variables = {
            "input": task_text(case, output, self.ctx),
            self.grader.value_name: value,
            self.grader.output_name: output.text,
            **case.vars,
        }
        return [
            Message(role, render(self.env, content, variables, where))
            for role, content in self.prompt
        ]

    def _score(self, verdict: Verdict, usage: JudgeUsage | None) -> Score:
        return Score(
            value=verdict.score,
            passed=verdict.passed,
            reason=verdict.reason,
            name=self.name,
            weight=self.assertion.weight,
            judge=usage,
        )

    async def score(self, case: Case, output: Output) -> Score:
        if output.error is not None:
            reason = f"nothing to judge: the call failed ({output.error})"
            return self._score(Verdict(False, 0.0, reason), None)
        if self.grader.expected_is_value and self._value(case) in (None, ""):
            reason = (
                f"{self.assertion.type} has no reference answer: give the assert a value "
                "or the dataset row an 'expected'"
            )
            return self._score(Verdict(False, 0.0, reason), None)
        try:
            if self.judge is None or self.model is None:
                self.model = judge_model(self.ctx, self.assertion.options.get("provider"))
                self.judge = judge_for(self.ctx)
            answer = await self.judge.ask(
                self.model, self.messages(case, output), self.grader.schema
            )
        except (ProviderError, ConfigError) as exc:  # no verdict: a failed score, with why
            reason = f"the judge could not be asked: {exc}"
            return self._score(Verdict(False, 0.0, reason), None)
        return self._verdict(answer)

    def _verdict(self, answer: JudgeAnswer) -> Score:
        return self._score(self.grader.read(answer.text, self.assertion), answer.usage)


def _factory(grader: Grader) -> Factory:
    def build(assertion: Assertion, ctx: ScoringContext) -> ModelGraded:
        return ModelGraded(grader, assertion, ctx)

    return build


FACTORIES: dict[str, Factory] = {
    "llm-rubric": _factory(LLM_RUBRIC),
    "judge": _factory(LLM_RUBRIC),
    "model-graded-closedqa": _factory(CLOSEDQA),
    "factuality": _factory(FACTUALITY),
}

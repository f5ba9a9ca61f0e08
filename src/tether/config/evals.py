"""The ``evals:`` section of a feature and its ``variants:``.

``evals`` says how a feature is measured: the dataset ``tether eval run`` uses by default, the
scorers every case gets on top of its own asserts, the gate a run must pass (its exit code), the
judge model of model-graded scorers, and online evaluation of sampled live traffic::

    evals:
      dataset: evals/assistant.jsonl
      scorers: [{type: icontains, value: paris}, "llm-rubric:Answers in one sentence"]
      gate: {min_pass_rate: 0.9}
      judge: {model: local:smollm2}
      online: {sample: 0.05, scorers: [is-json]}

A scorer is written like a promptfoo assert (``{type, value, threshold, weight, metric, ...}``)
or as the CLI's ``NAME[:ARG]`` string.

``variants`` are named versions of a feature (another model, prompt or temperature): a variant
is the feature with the fields it sets replaced. ``tether eval run --variant V`` measures one,
``tether eval compare`` compares two runs, rollouts pick among them.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from tether.config.base import Strict

ScorerSpec = str | dict[str, Any]


class GateConfig(Strict):
    """What a run must reach for ``tether eval run`` to exit 0."""

    min_pass_rate: float | None = Field(default=None, ge=0, le=1)
    min_score: float | None = Field(
        default=None, ge=0, le=1, description="the mean case score a run must reach"
    )


class JudgeConfig(Strict):
    """The model model-graded scorers (``llm-rubric``, ``factuality``, ...) ask by default."""

    model: str | None = Field(
        default=None,
        description="provider:model of any configured provider (default: the feature's model)",
    )
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=2)
    cache: bool = Field(default=True, description="cache verdicts on disk (.tether/judge-cache)")


class OnlineEvalConfig(Strict):
    """Scorers run on a sample of live calls, after the answer went out."""

    sample: float = Field(gt=0, le=1, description="the share of calls scored, e.g. 0.05")
    scorers: list[ScorerSpec] = Field(min_length=1)


class EvalsConfig(Strict):
    dataset: str | None = Field(
        default=None, description="the default dataset of `tether eval run` (relative: to config)"
    )
    scorers: list[ScorerSpec] = Field(default_factory=list)
    gate: GateConfig = Field(default_factory=GateConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    online: OnlineEvalConfig | None = None


class VariantConfig(Strict):
    """A named version of a feature: the fields set here replace the feature's."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    description: str | None = None
    prompt: dict[str, Any] | None = Field(
        default=None, description="prompt fields replaced (system, template)"
    )
    model: str | None = None
    fallbacks: list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    timeout_s: float | None = Field(default=None, gt=0)

    @field_validator("prompt")
    @classmethod
    def _prompt_keys(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        unknown = sorted(set(v or {}) - {"system", "template"})
        if unknown:
            raise ValueError(f"prompt.{unknown[0]}: a variant's prompt sets system or template")
        return v

    def overrides(self) -> dict[str, Any]:
        """The feature fields this variant replaces (``prompt`` merged key by key later)."""
        return self.model_dump(exclude_unset=True, exclude={"description"})

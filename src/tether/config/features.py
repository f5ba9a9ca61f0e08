"""The ``features:`` section of ``tether.yaml``: one entry per thing the application asks a model.

Stable keys (extend freely, never rename): ``features.<name>.{prompt.system, prompt.template,
model, fallbacks, timeout_s, on_failure.respond}``. Model references are ``provider:model``
strings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from tether.config.base import Strict
from tether.config.guards import GuardsConfig

ON_FAILURE_HINT = (
    "every feature must declare what users get when the model is unavailable, e.g. "
    'on_failure: {respond: "Sorry, I can\'t answer right now."} '
    "(or {feature: other-feature}, or {raise: true})"
)


def split_model_ref(ref: str) -> tuple[str, str]:
    """``"openai:gpt-4o-mini"`` -> ``("openai", "gpt-4o-mini")`` (the model part may hold ':')."""
    provider, sep, model = ref.partition(":")
    if not sep or not provider or not model:
        raise ValueError(
            f"model {ref!r} must be 'provider:model', e.g. 'local:smollm2' or 'openai:gpt-4o-mini'"
        )
    return provider, model


class PromptConfig(Strict):
    system: str | None = None
    template: str = Field(
        default="{{ message }}", description="Jinja2 template rendered with the call's variables."
    )


class RetryConfig(Strict):
    """Retries of one upstream: exponential backoff with full jitter, honouring Retry-After,
    inside a retry budget (retries may add at most ``budget_ratio`` of the calls made)."""

    max_attempts: int = Field(default=2, ge=1, le=10)
    backoff_base_s: float = Field(default=0.1, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)
    max_retry_after_s: float = Field(default=10.0, ge=0)
    budget_ratio: float = Field(default=0.2, ge=0, le=1)
    budget_min_retries: int = Field(default=10, ge=0)


class BreakerConfig(Strict):
    """A circuit breaker per upstream over a sliding window of recent outcomes."""

    window: int = Field(default=20, ge=1)
    min_calls: int = Field(default=5, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    cooldown_s: float = Field(default=15.0, ge=0)
    half_open_probes: int = Field(default=2, ge=1)


class OnFailureConfig(Strict):
    """The designed failure path: a static response, another feature, or raise."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    respond: str | None = None
    feature: str | None = None
    raise_: bool = Field(default=False, alias="raise")

    @model_validator(mode="after")
    def _exactly_one(self) -> OnFailureConfig:
        chosen = [self.respond is not None, self.feature is not None, self.raise_]
        if sum(chosen) != 1:
            raise ValueError(
                "on_failure takes exactly one of respond: TEXT, feature: NAME or raise: true"
            )
        return self


class TraceCaptureConfig(Strict):
    """What a feature's traces keep of each call: ``full`` the messages, variables and answer
    (only as redacted as the model saw them: with a redacting ``pii`` guard, never the
    originals), ``redacted`` the same texts with the ``pii`` detector run over them even
    without a ``pii`` guard, ``metadata`` no text at all, only counts and lengths."""

    capture: Literal["full", "redacted", "metadata"] = "full"
    max_chars: int = Field(
        default=32_768,
        ge=256,
        description="captured text kept per call (messages and variables; the answer on its "
        "own); a longer text is cut and marked",
    )


class FeatureConfig(Strict):
    description: str | None = None
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    model: str
    fallbacks: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=30.0, gt=0, description="Per attempt.")
    first_token_timeout_s: float | None = Field(default=None, gt=0)
    total_timeout_s: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    trace: TraceCaptureConfig = Field(default_factory=TraceCaptureConfig)
    on_failure: OnFailureConfig

    @field_validator("model")
    @classmethod
    def _model_ref(cls, v: str) -> str:
        split_model_ref(v)
        return v

    @field_validator("fallbacks")
    @classmethod
    def _fallback_refs(cls, v: list[str]) -> list[str]:
        for ref in v:
            split_model_ref(ref)
        return v

    @property
    def chain(self) -> list[str]:
        """The model and its fallbacks, in order."""
        return [self.model, *self.fallbacks]

    @property
    def deadline_s(self) -> float:
        """The call's total deadline: explicit, or enough for every attempt in the chain."""
        if self.total_timeout_s is not None:
            return self.total_timeout_s
        return self.timeout_s * self.retry.max_attempts * len(self.chain) + 5.0

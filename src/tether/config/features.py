"""The ``features:`` section of ``tether.yaml``: one entry per thing the application asks a model.

Stable keys (extend freely, never rename): ``features.<name>.{prompt.system, prompt.template,
model, fallbacks, timeout_s, on_failure.respond}``. Model references are ``provider:model``
strings.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from tether.config.base import Strict
from tether.config.budgets import BudgetsConfig, CacheConfig, RateLimitsConfig
from tether.config.evals import EvalsConfig, VariantConfig
from tether.config.guards import GuardsConfig

ON_FAILURE_HINT = (
    "every feature must declare what users get when the model is unavailable, e.g. "
    'on_failure: {respond: "Sorry, I can\'t answer right now."} '
    "(and respond_json: VALUE for requests that need tools or structured output; "
    "or {feature: other-feature}, or {raise: true})"
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
    """The designed failure path: a static answer, another feature, or raise.

    The static answer is ``respond`` (a text, for plain requests) and/or ``respond_json`` (a
    JSON value, for requests that need structured output or a tool call: ``response_format``
    ``json_schema`` / ``json_object``, or ``tools`` with ``tool_choice`` ``required`` or a named
    function). Such a request gets ``respond_json`` (as the content, or as the arguments of the
    tool call), checked against the request's schema when it is called; never the ``respond``
    text, which its parser could not read. Without ``respond_json`` it gets the error
    ``structured_output_unavailable`` instead. A plain request to a feature that only declares
    ``respond_json`` gets that value as JSON text."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    respond: str | None = None
    respond_json: Any = Field(
        default=None,
        description="The failure answer (any JSON value) to requests that need structured "
        "output or a tool call; set it alongside respond.",
    )
    feature: str | None = None
    raise_: bool = Field(default=False, alias="raise")

    @field_validator("respond_json")
    @classmethod
    def _json_value(cls, value: Any) -> Any:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"respond_json must be a JSON value ({exc}); quote dates, times and other "
                "values YAML reads as something else"
            ) from None
        return value

    @property
    def static(self) -> bool:
        """Whether the failure path is a static answer (``respond`` and/or ``respond_json``)."""
        return self.respond is not None or self.respond_json is not None

    @model_validator(mode="after")
    def _exactly_one(self) -> OnFailureConfig:
        chosen = [self.static, self.feature is not None, self.raise_]
        if sum(chosen) != 1:
            raise ValueError(
                "on_failure takes exactly one of respond: TEXT (and/or respond_json: VALUE), "
                "feature: NAME or raise: true"
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


FeatureKind = Literal["chat", "embedding"]


class ForwardConfig(Strict):
    """Which of a caller's request fields go upstream as they were sent: ``user`` (the end
    user's id, which OpenAI uses for abuse monitoring; Anthropic gets it as
    ``metadata.user_id``) and ``metadata`` (OpenAI's stored-completion tags; tether keeps both
    on the trace either way)."""

    user: bool = True
    metadata: bool = False


class FeatureConfig(Strict):
    """One feature. ``kind: embedding`` makes it an embedding feature (``/v1/embeddings``,
    ``Tether.embed``): texts in, vectors out, through its model chain (fallbacks, timeouts,
    retries, breakers), its input guards and its trace; it has no prompt, no output guards and
    no static answer (``on_failure`` is ``raise`` or another embedding ``feature``)."""

    description: str | None = None
    kind: FeatureKind = "chat"
    aliases: list[str] = Field(
        default_factory=list,
        description="other names the gateway and the SDK accept for this feature (e.g. "
        "gpt-4o-mini, for clients that check model names); key scopes name the feature",
    )
    forward: ForwardConfig = Field(default_factory=ForwardConfig)
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
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    rate_limits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    cache: CacheConfig | None = Field(
        default=None, description="An exact answer cache (off when absent)."
    )
    on_failure: OnFailureConfig
    evals: EvalsConfig = Field(default_factory=EvalsConfig)
    variants: dict[str, VariantConfig] = Field(
        default_factory=dict,
        description="named versions of the feature (another model, prompt, temperature)",
    )

    @field_validator("model")
    @classmethod
    def _model_ref(cls, v: str) -> str:
        split_model_ref(v)
        return v

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, v: list[str]) -> list[str]:
        for alias in v:
            if not alias or ":" in alias or alias != alias.strip():
                raise ValueError(
                    f"aliases: {alias!r} cannot be a name (no ':' -- it separates a variant --, "
                    "no surrounding spaces, not empty)"
                )
        return v

    @field_validator("fallbacks")
    @classmethod
    def _fallback_refs(cls, v: list[str]) -> list[str]:
        for ref in v:
            split_model_ref(ref)
        return v

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, v: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        for name, variant in v.items():
            if name == "default" or not name or ":" in name or name != name.strip():
                raise ValueError(
                    f"variants: {name!r} cannot name a variant ('default' is the feature as "
                    "declared; no ':', no surrounding spaces)"
                )
            for ref in [variant.model or "x:y", *(variant.fallbacks or [])]:
                split_model_ref(ref)
        return v

    def variant(self, name: str) -> FeatureConfig:
        """The feature as variant ``name`` runs it (``"default"``: as declared); raises KeyError
        for a variant it does not declare."""
        if name == "default":
            return self
        overrides = self.variants[name].overrides()
        if "prompt" in overrides:
            overrides["prompt"] = {**self.prompt.model_dump(), **overrides["prompt"]}
        data = {**self.model_dump(by_alias=True, exclude_unset=True), **overrides}
        data.pop("variants", None)
        return FeatureConfig.model_validate(data)

    @model_validator(mode="after")
    def _embedding_shape(self) -> FeatureConfig:
        if self.kind != "embedding":
            return self
        if self.on_failure.static:
            raise ValueError(
                "on_failure.respond: an embedding feature cannot answer with a text; use "
                "on_failure: {raise: true} or {feature: another-embedding-feature}"
            )
        if self.guards.output:
            raise ValueError(
                "guards.output: an embedding feature's answer is vectors, which output guards "
                "cannot check; remove them (input guards check every input text)"
            )
        unused = sorted({"prompt", "max_tokens", "temperature"} & self.model_fields_set)
        if unused:
            raise ValueError(
                f"{unused[0]}: an embedding feature embeds the caller's texts as they are, "
                "with no prompt or sampling; remove it"
            )
        return self

    @property
    def chains(self) -> list[list[str]]:
        """The chain of the feature and of each of its variants."""
        return [self.chain, *(self.variant(name).chain for name in self.variants)]

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

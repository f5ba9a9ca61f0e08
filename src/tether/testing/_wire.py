"""What the faulty upstream says: OpenAI and Anthropic answers, as bodies and event streams."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Answer:
    """What to answer one request with."""

    model: str
    pieces: list[str]
    tool_calls: list[tuple[str, str]]
    input_tokens: int
    output_tokens: int
    include_usage: bool
    body: Any = None  # the request's JSON body (embeddings answer from its inputs)
    refusal: str | None = None  # OpenAI: the message's refusal (streamed as refusal deltas)
    system_fingerprint: str | None = None  # OpenAI: on the answer and on every chunk
    logprobs: bool = False  # OpenAI: a logprob per piece (the request asked logprobs: true)
    cached_tokens: int = 0  # of input_tokens (OpenAI: prompt_tokens_details; Anthropic: reads)
    reasoning_tokens: int = 0  # of output_tokens (OpenAI: completion_tokens_details)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(slots=True)
class Events:
    """An encoded event stream: preamble, content events, and the events that end it."""

    head: list[bytes] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    tail: list[bytes] = field(default_factory=list)


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


def split_text(text: str, chunks: int) -> list[str]:
    """``text`` in ``chunks`` pieces (0: one piece per word, keeping the spaces)."""
    if not text:
        return []
    if chunks <= 0:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]
    size = max(1, -(-len(text) // chunks))
    return [text[i : i + size] for i in range(0, len(text), size)]


def halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [p for p in (text[:middle], text[middle:]) if p]


# ---------------------------------------------------------------- the two wire dialects


class OpenAIWire:
    """OpenAI chat completions."""

    @staticmethod
    def error(status: int) -> dict[str, Any]:
        kind = {429: "rate_limit_exceeded", 401: "invalid_api_key", 400: "invalid_request_error"}
        return {
            "error": {
                "message": f"fault injected: HTTP {status}",
                "type": kind.get(status, "server_error"),
                "code": kind.get(status),
            }
        }

    @staticmethod
    def complete(answer: Answer) -> dict[str, Any]:
        content = answer.text or (None if answer.refusal else "")
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": answer.refusal,
        }
        if answer.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                for i, (n, a) in enumerate(answer.tool_calls)
            ]
        logprobs = OpenAIWire.logprobs(answer, answer.pieces)
        out = {
            "id": "chatcmpl-faulty",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                    "logprobs": logprobs,
                }
            ],
            "usage": OpenAIWire.usage(answer),
        }
        if answer.system_fingerprint is not None:
            out["system_fingerprint"] = answer.system_fingerprint
        return out

    @staticmethod
    def logprobs(answer: Answer, pieces: list[str]) -> dict[str, Any] | None:
        """A logprob per piece of text (a made-up but fixed -0.25), when the answer has them."""
        if not answer.logprobs:
            return None
        content = [
            {"token": p, "logprob": -0.25, "bytes": list(p.encode()), "top_logprobs": []}
            for p in pieces
        ]
        return {"content": content, "refusal": None}

    @staticmethod
    def usage(answer: Answer) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        }
        if answer.cached_tokens or answer.reasoning_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": answer.cached_tokens}
            usage["completion_tokens_details"] = {"reasoning_tokens": answer.reasoning_tokens}
        return usage

    @staticmethod
    def events(answer: Answer) -> Events:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
            data = {
                "id": "chatcmpl-faulty",
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.model,
                "choices": [choice],
            }
            if answer.system_fingerprint is not None:
                data["system_fingerprint"] = answer.system_fingerprint
            return sse(data)

        out = Events(head=[chunk({"role": "assistant", "content": ""})])
        out.body = [
            chunk({"content": piece}, logprobs=OpenAIWire.logprobs(answer, [piece]))
            for piece in answer.pieces
        ]
        out.body += [chunk({"refusal": piece}) for piece in halves(answer.refusal or "")]
        for i, (name, arguments) in enumerate(answer.tool_calls):
            start: dict[str, Any] = {"index": i, "id": f"call_{i}", "type": "function"}
            start["function"] = {"name": name, "arguments": ""}
            out.body.append(chunk({"tool_calls": [start]}))
            for piece in halves(arguments):
                out.body.append(
                    chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                )
        out.tail.append(chunk({}, "tool_calls" if answer.tool_calls else "stop"))
        if answer.include_usage:
            last = {
                "id": "chatcmpl-faulty",
                "object": "chat.completion.chunk",
                "created": created,
                "model": answer.model,
                "choices": [],
                "usage": OpenAIWire.usage(answer),
            }
            out.tail.append(sse(last))
        out.tail.append(sse("[DONE]"))
        return out

    @staticmethod
    def error_event() -> bytes:
        return sse({"error": {"message": "fault injected: server error", "type": "server_error"}})


class EmbeddingsWire(OpenAIWire):
    """OpenAI embeddings: a deterministic vector per input (from a hash of its text; equal texts
    get equal vectors), ``dimensions`` long when the request says (else
    :data:`EMBEDDING_DIMENSIONS`), as floats or, with ``encoding_format: base64``, as
    little-endian float32 bytes in base64, as OpenAI sends them. Errors are OpenAI's."""

    @staticmethod
    def complete(answer: Answer) -> dict[str, Any]:
        body = answer.body if isinstance(answer.body, dict) else {}
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else [str(x) for x in raw or []]
        dimensions = body.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and dimensions > 0 else 0
        base64_wanted = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vector = text_vector(text, size or EMBEDDING_DIMENSIONS)
            encoded: Any = vector
            if base64_wanted:
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(len(text.split()) for text in inputs)
        return {
            "object": "list",
            "data": data,
            "model": answer.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


EMBEDDING_DIMENSIONS = 16


def text_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector from the SHA-256 of ``text`` (repeated to length)."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) * (1 + i // len(digest)) for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


class AnthropicWire:
    """Anthropic messages."""

    @staticmethod
    def error(status: int) -> dict[str, Any]:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }
        message = f"fault injected: HTTP {status}"
        return {
            "type": "error",
            "error": {"type": kind.get(status, "api_error"), "message": message},
        }

    @staticmethod
    def _blocks(answer: Answer) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if answer.text:
            blocks.append({"type": "text", "text": answer.text})
        for i, (name, arguments) in enumerate(answer.tool_calls):
            use: dict[str, Any] = {"type": "tool_use", "id": f"toolu_{i}", "name": name}
            use["input"] = json.loads(arguments)
            blocks.append(use)
        return blocks

    @staticmethod
    def complete(answer: Answer) -> dict[str, Any]:
        return {
            "id": "msg_faulty",
            "type": "message",
            "role": "assistant",
            "model": answer.model,
            "content": AnthropicWire._blocks(answer),
            "stop_reason": "tool_use" if answer.tool_calls else "end_turn",
            "stop_sequence": None,
            "usage": AnthropicWire.usage(answer),
        }

    @staticmethod
    def usage(answer: Answer) -> dict[str, int]:
        """Anthropic counts cache reads apart from the other input tokens."""
        usage = {
            "input_tokens": answer.input_tokens - answer.cached_tokens,
            "output_tokens": answer.output_tokens,
        }
        if answer.cached_tokens:
            usage["cache_read_input_tokens"] = answer.cached_tokens
        return usage

    @staticmethod
    def events(answer: Answer) -> Events:
        def event(kind: str, **data: Any) -> bytes:
            return sse({"type": kind, **data}, kind)

        start = AnthropicWire.complete(answer) | {"content": [], "stop_reason": None}
        start["usage"] = AnthropicWire.usage(answer) | {"output_tokens": 1}
        out = Events(head=[event("message_start", message=start), event("ping")])
        index = 0
        if answer.pieces:
            out.head.append(
                event("content_block_start", index=0, content_block={"type": "text", "text": ""})
            )
            for piece in answer.pieces:
                delta = {"type": "text_delta", "text": piece}
                out.body.append(event("content_block_delta", index=0, delta=delta))
            out.body.append(event("content_block_stop", index=0))
            index = 1
        for i, (name, arguments) in enumerate(answer.tool_calls, start=index):
            block = {"type": "tool_use", "id": f"toolu_{i - index}", "name": name, "input": {}}
            out.body.append(event("content_block_start", index=i, content_block=block))
            for piece in halves(arguments):
                delta = {"type": "input_json_delta", "partial_json": piece}
                out.body.append(event("content_block_delta", index=i, delta=delta))
            out.body.append(event("content_block_stop", index=i))
        stop = "tool_use" if answer.tool_calls else "end_turn"
        out.tail.append(
            event(
                "message_delta",
                delta={"stop_reason": stop, "stop_sequence": None},
                usage={"output_tokens": answer.output_tokens},
            )
        )
        out.tail.append(event("message_stop"))
        return out

    @staticmethod
    def error_event() -> bytes:
        error = {"type": "overloaded_error", "message": "fault injected: overloaded"}
        return sse({"type": "error", "error": error}, "error")


Wire = type[OpenAIWire] | type[AnthropicWire]


def count_words(body: Any) -> int:
    """A rough prompt size: whitespace words in every message's text."""
    total = 0
    messages = body.get("messages") if isinstance(body, dict) else None
    system = body.get("system") if isinstance(body, dict) else None
    for message in [{"content": system}, *(messages or [])]:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and isinstance(block.get("text"), str):
                    total += len(block["text"].split())
    return total

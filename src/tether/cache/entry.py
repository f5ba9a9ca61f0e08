"""What the response cache keys on and what it keeps, as JSON (compact, sorted keys: the same
request always gives the same bytes; never pickle, so an entry written by one replica or
version can be read by another without running anything).

The key is the SHA-256 of: the feature, its variant (``trace.variant``), its config version
(``CompiledFeature.version``: a changed prompt, model or guard starts a fresh cache), the
scope's identity (``global``, or the caller's user or tenant), where in the chain the call
starts (an input guard may start it further on) and the normalised request: every message
(role, content, parts, tool calls, tool call id, name), ``tools``, ``tool_choice``,
``response_format``, ``max_tokens``, ``temperature``, ``top_p``, ``stop`` and the options passed
through to the provider (``seed``, ``logprobs``, ``dimensions`` of an embedding, ...) except
``user`` and ``metadata``, which do not change an answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from tether.pipeline.call import Answer, Call
from tether.types import Message, ModelRequest, ModelResponse, ToolCall, Usage

UNKEYED_OPTIONS = frozenset({"user", "metadata"})  # forwarded for the upstream's records only


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _message(message: Message) -> dict[str, Any]:
    calls = [[c.id, c.name, c.arguments, c.type] for c in message.tool_calls or []]
    return {
        "role": message.role,
        "content": message.content,
        "parts": message.parts,
        "tool_calls": calls or None,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
    }


def normalised(request: ModelRequest) -> dict[str, Any]:
    """The parts of a request that decide its answer, as plain JSON values."""
    options = {k: v for k, v in request.extra.items() if k not in UNKEYED_OPTIONS}
    return {
        "messages": [_message(m) for m in request.messages],
        "tools": request.tools,
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop,
        "options": options,
    }


def digest(call: Call, identity: str) -> str:
    """The hex SHA-256 that names this call's entry (see the module docstring)."""
    keyed = {
        "feature": call.feature.name,
        "variant": call.trace.variant,
        "version": call.feature.version,
        "scope": identity,
        "start": call.model.start,
        "kind": call.kind,
        "request": normalised(call.request),
    }
    return hashlib.sha256(_dumps(keyed).encode("utf-8")).hexdigest()


def encode(answer: Answer, position: int) -> bytes:
    """An answer as the model at ``position`` of the chain gave it (its usage and cost kept
    for the record), as JSON. TypeError/ValueError when something in it is not JSON."""
    r = answer.response
    entry = {
        "text": r.text,
        "tool_calls": [[c.id, c.name, c.arguments, c.type] for c in r.tool_calls or []] or None,
        "finish_reason": r.finish_reason,
        "model": r.model,
        "provider": r.provider,
        "refusal": r.refusal,
        "logprobs": r.logprobs,
        "system_fingerprint": r.system_fingerprint,
        "usage": r.usage.as_dict(),
        "cost_usd": r.cost_usd,
        "position": position,
        "vectors": answer.vectors,
        "stored_at": time.time(),
    }
    return _dumps(entry).encode("utf-8")


def decode(data: bytes) -> tuple[Answer, dict[str, Any]]:
    """A stored entry as an answer that costs nothing (usage zero, cost 0: a hit is free),
    and the entry's record (its original ``usage``, ``cost_usd``, ``stored_at``).
    ValueError/KeyError/TypeError for an entry that is not one of ours."""
    entry = json.loads(data)
    calls = [ToolCall(i, n, a, t) for i, n, a, t in entry["tool_calls"] or []]
    response = ModelResponse(
        text=entry["text"],
        usage=Usage(),
        model=entry["model"],
        provider=entry["provider"],
        cost_usd=0.0,
        finish_reason=entry["finish_reason"],
        tool_calls=calls or None,
        logprobs=entry["logprobs"],
        refusal=entry["refusal"],
        system_fingerprint=entry["system_fingerprint"],
        position=entry["position"],
    )
    answer = Answer.of(response)
    answer.vectors = entry["vectors"]
    record = {k: entry[k] for k in ("usage", "cost_usd", "stored_at")}
    return answer, record

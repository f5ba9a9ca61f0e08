"""The embedded SmolLM2 model honours ``response_format: json_schema`` with a llama.cpp grammar:
its answer, for real, parses and validates against the schema, so a chain may fall back to it
on a structured request (it is skipped only for what it cannot do: tools, images, audio)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tether import Tether
from tether.config import parse_config
from tether.config.models import LocalProviderConfig
from tether.errors import UpstreamError
from tether.providers.base import CallContext
from tether.providers.local import LocalProvider
from tether.providers.scripted import Fail, ScriptedProvider
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

pytestmark = pytest.mark.local_model

SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "urgent": {"type": "boolean"},
        "topics": {
            "type": "array",
            "items": {"type": "string", "enum": ["delivery", "billing", "product"]},
            "maxItems": 2,
        },
    },
    "required": ["sentiment", "urgent", "topics"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "triage", "strict": True, "schema": SCHEMA},
}


def triage(text: str) -> ModelRequest:
    return ModelRequest(
        [Message("system", "Triage the customer's message as JSON."), Message("user", text)],
        max_tokens=80,
        temperature=0,
        response_format=RESPONSE_FORMAT,
    )


@pytest.mark.parametrize(
    "text",
    [
        "My parcel arrived broken and I was charged twice. Fix this today!",
        "Thanks, the new blender works great.",
    ],
)
async def test_the_answer_validates_against_the_schema(text: str) -> None:
    provider = LocalProvider(LocalProviderConfig(kind="local"))
    try:
        response = await provider.model("smollm2").complete(
            triage(text), CallContext(Trace(feature="t"))
        )
    finally:
        await provider.aclose()
    assert response.finish_reason == "stop", response.text  # whole, not cut by max_tokens
    jsonschema.validate(json.loads(response.text), SCHEMA)


async def test_a_structured_request_falls_back_to_the_local_model() -> None:
    text = (
        "providers:\n  a: {kind: scripted}\n"
        "features:\n  f:\n    model: a:gpt-4o-mini\n    fallbacks: [local:smollm2]\n"
        "    retry: {max_attempts: 1}\n    timeout_s: 60\n"
        '    on_failure: {respond: "unavailable"}\n'
    )
    down = ScriptedProvider([Fail(UpstreamError("down", status_code=503))], name="a")
    async with Tether(parse_config(text, "t.yaml", {}), providers={"a": down}) as tether:
        result = await tether.run("f", request=triage("Where is my order? It is late."))
    assert not result.degraded and result.model == "local:smollm2"
    jsonschema.validate(json.loads(result.output), SCHEMA)
    assert result.trace is not None
    assert not [e for e in result.trace.events if e.kind == "fallback_skipped"]

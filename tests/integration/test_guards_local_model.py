"""A ``json_schema`` output guard on the embedded SmolLM2 model, for real.

The guardrails promise: a feature with ``json_schema`` on the local model returns valid JSON or
its failure response, never invalid JSON. SmolLM2-135M is weak at JSON, which is the point:
every answer is either valid against the schema (first try, or after a re-ask) or exactly the
feature's ``on_failure`` response. The counts are printed (``pytest -s``).
"""

from __future__ import annotations

import collections
import json
from typing import Any

import jsonschema
import pytest

from tether import Tether
from tether.config import parse_config
from tether.pipeline.result import Result

pytestmark = pytest.mark.local_model

FAILURE = "Sorry, no structured answer right now."
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["answer"],
    "properties": {"answer": {"type": "string"}},
    "additionalProperties": False,
}
CONFIG = f"""\
features:
  qa:
    prompt:
      system: "You reply with JSON only."
      template: |-
        Answer the question with a JSON object like {{"answer": "..."}}.
        Q: What is the capital of Italy?
        JSON: {{"answer": "Rome"}}
        Q: {{{{ question }}}}
        JSON:
    model: local:smollm2
    temperature: 0
    max_tokens: 48
    timeout_s: 60
    guards:
      output:
        - json_schema: {{schema: {json.dumps(SCHEMA)}, action: reask, max_reasks: 2}}
    on_failure: {{respond: "{FAILURE}"}}
"""
QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What colour is the sky?",
    "Who wrote Hamlet?",
    "What is 2 + 2?",
    "Name a fruit that is yellow.",
    "What is the largest planet?",
    "What language is spoken in Brazil?",
    "Which animal says moo?",
    "What do bees make?",
]


def classify(result: Result) -> str:
    """'valid' (first try), 'valid_after_reask', or 'failure'; asserts it is one of them."""
    assert result.trace is not None
    attempts = len(result.trace.attempts)
    assert 1 <= attempts <= 3  # the first answer and at most max_reasks re-asks
    if result.output == FAILURE:
        assert result.degraded and result.reason == "guard_blocked" and result.value is None
        assert attempts == 3
        return "failure"
    value = json.loads(result.output)  # never invalid JSON
    jsonschema.validate(value, SCHEMA)
    assert result.value == value and not result.degraded
    return "valid" if attempts == 1 else "valid_after_reask"


async def test_json_schema_feature_answers_valid_json_or_its_failure_response() -> None:
    counts: collections.Counter[str] = collections.Counter()
    async with Tether(parse_config(CONFIG, "t.yaml", {})) as tether:
        for question in QUESTIONS:
            result = await tether.run("qa", {"question": question})
            kind = classify(result)
            counts[kind] += 1
            print(f"{kind:18} {question!r} -> {result.output!r}")
        streamed = [c async for c in tether.stream("qa", {"question": QUESTIONS[0]})]
    print(f"json_schema on local:smollm2 over {len(QUESTIONS)} prompts: {dict(counts)}")
    assert sum(counts.values()) == len(QUESTIONS)
    assert counts["valid"] + counts["valid_after_reask"] >= 1
    # a stream of a re-asking feature is answered in one piece, after the guard passed
    *pieces, last = streamed
    assert last.done and last.result is not None and last.error is None
    assert "".join(p.text for p in pieces) == last.result.output
    classify(last.result)

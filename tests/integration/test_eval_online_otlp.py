"""Online evaluation results reach OpenTelemetry: each scorer's verdict on a sampled call is a
``gen_ai.evaluation.result`` event on the call's span, received by a real OTLP/HTTP receiver on
loopback (GenAI semantic conventions: name, score value and label, explanation, error.type)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tether import Tether
from tether.config import parse_config
from tether.evals.types import Assertion, Case, Output, Score
from tether.providers.scripted import ScriptedProvider
from tether.testing.otlp import OtlpReceiver

ME = "tests.integration.test_eval_online_otlp"


def concise(case: Case, output: Output) -> Score:
    short = len(output.text) <= 20
    return Score(0.9 if short else 0.1, short, f"{len(output.text)} characters")


class Broken:
    """A scorer that raises (the protocol itself: the registry's custom functions never do)."""

    name = "broken"

    async def score(self, case: Case, output: Output) -> Score:
        raise RuntimeError("no verdict")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


async def test_each_online_verdict_is_a_gen_ai_evaluation_result_event(
    receiver: OtlpReceiver,
) -> None:
    config = parse_config(
        f"""
providers:
  s: {{kind: scripted}}
features:
  f:
    prompt: {{template: "{{{{ q }}}}"}}
    model: s:m
    on_failure: {{respond: sorry}}
    evals:
      online: {{sample: 1.0, scorers: ["{ME}:concise"]}}
telemetry:
  otlp_endpoint: {receiver.endpoint}
""",
        "t.yaml",
        {},
    )
    tether = Tether(config, providers={"s": ScriptedProvider(["It is Paris."], name="s")})
    assert tether.online is not None
    tether.online.features["f"].scorers.append((Assertion("broken"), Broken()))
    result = await tether.run("f", {"q": "capital of France?"})
    await tether.aclose()  # scoring drained, then the OTel sink flushed
    spans = receiver.wait_for_spans(2)  # the call and its one attempt
    (span,) = [s for s in spans if s.trace_id == result.trace_id and s.parent_span_id is None]
    events = [e for e in span.events if e.name == "gen_ai.evaluation.result"]
    assert len(events) == 2
    verdict, failure = events
    assert verdict.attributes == {
        "gen_ai.evaluation.name": f"{ME}:concise",
        "gen_ai.evaluation.score.value": 0.9,
        "gen_ai.evaluation.score.label": "pass",
        "gen_ai.evaluation.explanation": "12 characters",
        "tether.evaluation.type": "custom",
    }
    assert failure.attributes["gen_ai.evaluation.name"] == "broken"
    assert failure.attributes["gen_ai.evaluation.score.label"] == "error"
    assert failure.attributes["error.type"] == "RuntimeError"
    assert failure.attributes["tether.evaluation.error"] == "RuntimeError: no verdict"
    assert "gen_ai.evaluation.score.value" not in failure.attributes

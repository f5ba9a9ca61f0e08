"""Trace.to_dict(): the hand-written view equals what dataclasses.asdict made, and is a snapshot."""

from __future__ import annotations

import dataclasses
import json
from collections import namedtuple
from datetime import UTC, datetime
from typing import Any

from tether.telemetry.trace import Trace
from tether.types import Usage

Point = namedtuple("Point", "x y")


def reference(trace: Trace) -> dict[str, Any]:
    """The previous implementation, kept as the specification of the shape."""
    data = dataclasses.asdict(trace)
    data.pop("t0")
    data["usage"] = trace.usage.as_dict()
    for attempt, raw in zip(trace.attempts, data["attempts"], strict=True):
        raw["usage"] = attempt.usage.as_dict()
        raw["duration_ms"] = round(attempt.duration_ms, 3)
    return data


def busy_trace() -> Trace:
    trace = Trace(feature="support", user="u1", variant="candidate", metadata={"ticket": "T-1"})
    trace.metadata["nested"] = {"tags": ["a", "b"], "pair": (1, 2), "point": Point(1, 2)}
    trace.metadata["usage"] = Usage(3, 4)
    trace.metadata["when"] = datetime(2024, 5, 1, tzinfo=UTC)
    first = trace.start_attempt("gpt-4o-mini", "openai", streamed=True)
    first.status, first.error_class, first.error, first.status_code = "error", "Timeout", "t", 504
    first.end_ms, first.ttft_ms = first.start_ms + 5.12345, 1.5
    trace.event("retry", attempt=1, delay_s=0.2)
    trace.event("guard", findings=[{"type": "EMAIL", "span": [1, 5]}], ids={7})
    second = trace.start_attempt("smollm2", "local")
    second.chain_position, second.end_ms, second.usage = 1, second.start_ms + 40, Usage(12, 30)
    second.cost_usd, second.response_model = 1e-5, "smollm2-135m"
    trace.status, trace.degraded, trace.reason = "degraded", True, "timeout"
    trace.output, trace.model, trace.usage = "Hello!", "local:smollm2", Usage(12, 30)
    trace.cost_usd, trace.latency_ms = 1e-5, 47.5
    return trace


def test_same_shape_keys_and_values_as_asdict() -> None:
    for trace in (Trace(feature="empty"), busy_trace()):
        got, want = trace.to_dict(), reference(trace)
        assert got == want
        assert list(got) == list(want)
        for mine, theirs in zip(got["attempts"], want["attempts"], strict=True):
            assert list(mine) == list(theirs)
        nested = got["metadata"].get("nested")
        if nested is not None:  # container types are kept exactly as asdict kept them
            assert type(nested["pair"]) is tuple and type(nested["point"]) is Point
            assert got["metadata"]["usage"] == {
                "input_tokens": 3,
                "output_tokens": 4,
                "cached_input_tokens": 0,
                "reasoning_tokens": 0,
            }


def test_the_view_is_a_snapshot() -> None:
    trace = busy_trace()
    data = trace.to_dict()
    trace.metadata["nested"]["tags"].append("c")
    trace.metadata["ticket"] = "T-2"
    trace.events[1].data["findings"][0]["type"] = "PHONE"
    trace.attempts[0].usage = Usage(99, 99)
    assert data["metadata"]["ticket"] == "T-1"
    assert data["metadata"]["nested"]["tags"] == ["a", "b"]
    assert data["events"][1]["data"]["findings"][0]["type"] == "EMAIL"
    assert data["attempts"][0]["usage"]["input_tokens"] == 0


def test_a_plain_trace_is_json_ready() -> None:
    trace = Trace(feature="support")
    trace.start_attempt("m", "p").end_ms = 2.0
    trace.event("cache", hit=False)
    assert json.loads(json.dumps(trace.to_dict())) == trace.to_dict()

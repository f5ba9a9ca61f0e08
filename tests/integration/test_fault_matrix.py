"""Every upstream fault, through the whole pipeline, against a real HTTP server on loopback.

For each fault: with a fallback the call succeeds through it; without one the feature's failure
response comes back with the right reason; the trace shows what happened. Nothing is patched:
the OpenAI-compatible provider talks HTTP to ``FaultyUpstream`` (or to a refused / blackholed
port), and the fallback is the scripted provider.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tether import Tether
from tether.config import parse_config
from tether.providers.scripted import Reply, ScriptedProvider
from tether.testing.upstream import Blackhole, Fault, FaultyUpstream, refused_base_url

FAILURE_TEXT = "Sorry, we are on it."


@dataclass(frozen=True)
class Case:
    name: str
    fault: Fault | None  # None: the base URL itself is broken (refused / blackhole)
    reason: str
    error_class: str


CASES = [
    Case("http_500", Fault.SERVER_500, "upstream_error", "UpstreamError"),
    Case("http_502", Fault.SERVER_502, "upstream_error", "UpstreamError"),
    Case("http_503", Fault.SERVER_503, "upstream_error", "UpstreamError"),
    Case("http_429_retry_after", Fault.RATE_LIMITED, "rate_limited", "RateLimited"),
    Case("connection_refused", None, "upstream_error", "UpstreamError"),
    Case("connect_timeout", None, "timeout", "Timeout"),
    Case("read_timeout", Fault.READ_TIMEOUT, "timeout", "Timeout"),
    Case("slow_first_token", Fault.SLOW_FIRST_TOKEN, "timeout", "Timeout"),
    Case("stream_cut", Fault.STREAM_CUT, "upstream_error", "UpstreamError"),
    Case("malformed_json", Fault.MALFORMED_JSON, "upstream_error", "UpstreamError"),
    Case("malformed_sse", Fault.MALFORMED_SSE, "upstream_error", "UpstreamError"),
    Case("wrong_content_type", Fault.WRONG_CONTENT_TYPE, "upstream_error", "UpstreamError"),
]


def config_for(base_url: str, transport: str) -> str:
    return f"""\
providers:
  up: {{kind: openai, base_url: "{base_url}", api_key: test, connect_timeout_s: 0.3,
        transport: {transport}}}
  spare: {{kind: scripted}}
features:
  with_fallback:
    prompt: {{template: "{{{{ message }}}}"}}
    model: up:gpt-4o-mini
    fallbacks: [spare:backup]
    timeout_s: 0.6
    first_token_timeout_s: 0.3
    retry: {{max_attempts: 2, backoff_base_s: 0.01, max_retry_after_s: 0.2}}
    on_failure: {{respond: "{FAILURE_TEXT}"}}
  alone:
    prompt: {{template: "{{{{ message }}}}"}}
    model: up:gpt-4o-mini
    timeout_s: 0.6
    first_token_timeout_s: 0.3
    retry: {{max_attempts: 2, backoff_base_s: 0.01, max_retry_after_s: 0.2}}
    on_failure: {{respond: "{FAILURE_TEXT}"}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(text="upstream answer", retry_after=0.05, first_token_delay_s=1.0) as up:
        yield up


@pytest.fixture
def base_url(request: pytest.FixtureRequest, upstream: FaultyUpstream) -> Iterator[str]:
    case: Case = request.param
    if case.name == "connection_refused":
        yield refused_base_url()
    elif case.name == "connect_timeout":
        with Blackhole() as hole:
            yield hole.base_url
    else:
        assert case.fault is not None
        upstream.reset()
        upstream.set_fault(case.fault)
        yield upstream.base_url


@pytest.fixture(params=["default", "lean"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every fault runs on each transport (``providers.NAME.transport``)."""
    return str(request.param)


def make(base_url: str, transport: str) -> Tether:
    spare = ScriptedProvider([Reply("fallback answer")], name="spare")
    config = parse_config(config_for(base_url, transport), "t.yaml", {})
    return Tether(config, providers={"spare": spare})


def upstream_attempts(result_trace: object) -> list[str | None]:
    return [
        a.error_class
        for a in result_trace.attempts  # type: ignore[attr-defined]
        if a.model.startswith("up:")
    ]


# A stream cut after content reached the caller may not switch provider: tested on its own below.
WITH_FALLBACK = [
    pytest.param(case, streamed, id=f"{'stream' if streamed else 'complete'}-{case.name}")
    for case in CASES
    for streamed in (False, True)
    if not (streamed and case.fault is Fault.STREAM_CUT)
]


@pytest.mark.parametrize(("base_url", "streamed"), WITH_FALLBACK, indirect=["base_url"])
async def test_fault_with_fallback_succeeds(base_url: str, streamed: bool, transport: str) -> None:
    async with make(base_url, transport) as tether:
        if streamed:
            chunks = [c async for c in tether.stream("with_fallback", {"message": "hi"})]
            result = chunks[-1].result
        else:
            result = await tether.run("with_fallback", {"message": "hi"})
    assert result is not None and result.trace is not None
    trace = result.trace
    assert result.output == "fallback answer"
    assert result.model == "spare:backup" and not result.degraded
    failed = upstream_attempts(trace)
    assert failed and all(cls is not None for cls in failed)
    assert "fallback" in [e.kind for e in trace.events]


@pytest.mark.parametrize("base_url", CASES, ids=[c.name for c in CASES], indirect=True)
async def test_fault_without_fallback_takes_failure_path(
    base_url: str, request: pytest.FixtureRequest, transport: str
) -> None:
    case = next(c for c in CASES if c.name in request.node.callspec.id.split("-"))
    async with make(base_url, transport) as tether:
        result = await tether.run("alone", {"message": "hi"})
    assert result.output == FAILURE_TEXT
    assert result.degraded and result.reason == case.reason
    assert result.trace is not None
    assert upstream_attempts(result.trace)[-1] == case.error_class
    failure = [e for e in result.trace.events if e.kind == "failure_path"]
    assert failure and failure[0].data["reason"] == case.reason


async def test_retry_after_is_waited_then_upstream_recovers(
    upstream: FaultyUpstream, transport: str
) -> None:
    upstream.reset()
    upstream.script([Fault.RATE_LIMITED, Fault.OK])
    async with make(upstream.base_url, transport) as tether:
        result = await tether.run("alone", {"message": "hi"})
    assert result.output == "upstream answer" and not result.degraded
    assert result.trace is not None
    (retry,) = [e for e in result.trace.events if e.kind == "retry"]
    assert retry.data["delay_s"] == pytest.approx(0.05)


async def test_stream_cut_after_first_token_is_an_explicit_error(
    upstream: FaultyUpstream, transport: str
) -> None:
    upstream.reset()
    upstream.set_fault(Fault.STREAM_CUT)
    upstream.text = "one two three four five six"
    try:
        async with make(upstream.base_url, transport) as tether:
            chunks = [c async for c in tether.stream("with_fallback", {"message": "hi"})]
    finally:
        upstream.text = "upstream answer"
    final = chunks[-1]
    assert final.done and final.error is not None
    assert final.result is not None and final.result.reason == "stream_interrupted"
    assert final.result.output.startswith("one")
    assert final.result.trace is not None
    assert [a.model for a in final.result.trace.attempts] == ["up:gpt-4o-mini"]  # no switch

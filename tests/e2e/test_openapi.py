"""schemathesis against a live ``tether serve``: every operation of the gateway's own OpenAPI
document, in local mode (no keys) and with keys (with a scoped key and the admin token, and
without any credentials).

Whatever schemathesis sends, the gateway must answer without a 5xx, every 4xx must be the OpenAI
error envelope, and every answer must match the document (status, content type, headers, body).
The upstream is tether's FaultyUpstream on loopback (no model runs), and hypothesis is bounded
and derandomized so a run is quick and repeatable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tether.gateway.openapi import OPENAPI_PATH, build_document
from tether.testing.upstream import FaultyUpstream

from .gateway_server import GatewayProcess, tether_cli

CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: upstream-key}}
  fake: {{kind: scripted, replies: [{{text: "scripted answer"}}, {{error: upstream_error}}]}}
features:
  assistant:
    prompt: {{system: "You are the ACME helper.", template: "{{{{ message }}}}"}}
    model: up:gpt-4o-mini
    timeout_s: 5
    retry: {{max_attempts: 1}}
    on_failure: {{respond: "assistant is unavailable"}}
  strict:
    model: fake:m
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
  vectors:
    kind: embedding
    model: up:text-embedding-3-small
    fallbacks: [fake:vectors]
    retry: {{max_attempts: 1}}
    on_failure: {{raise: true}}
store:
  url: "sqlite:///traces.db"
"""
ADMIN_TOKEN = "admin-secret-for-schemathesis"
FEATURE = "assistant"  # the key's scope, and the name in the document's examples
# "strict" answers and fails in turn, and raises: 200s and 424s; "vectors" embeds (a chat call
# to it, or an embedding call to the others, is a 400)
FEATURES = (FEATURE, "strict", "vectors")
EXAMPLES = 25  # per operation and generation mode: about 500 requests in all, ~20 s
POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE


# operations whose only input is a free path segment with optional auth: every non-empty string
# is valid, so there is no invalid request to generate (hypothesis finds none)
NOTHING_INVALID = {
    ("GET", "/v1/models/{model_id}"),
    ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"),
    ("GET", "/admin/budgets"),  # optional free-text filters only
}


def operations(*modes: schemathesis.GenerationMode) -> list[Any]:
    """Every documented operation in each mode; negative data only where there is input to
    make invalid (parameters or a body)."""
    return [
        pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode.value}")
        for path, item in build_document()["paths"].items()
        for method, operation in item.items()
        for mode in modes
        if mode is POSITIVE
        or (
            ("parameters" in operation or "requestBody" in operation)
            and (method.upper(), path) not in NOTHING_INVALID
        )
    ]


@dataclass
class Gateway:
    """A running gateway, the credentials to send to each operation, and what to expect."""

    process: GatewayProcess
    schema: Any  # schemathesis's schema, loaded from the gateway's /openapi.json
    credentials: Callable[[str], dict[str, str]] = lambda path: {}
    expect_401: Callable[[str], bool] = lambda path: False
    trace_id: str | None = None  # a stored trace, for GET /admin/traces/{trace_id}


def needs_a_key(path: str) -> bool:
    return path.startswith(("/v1/", "/admin/", "/metrics"))


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultyUpstream]:
    with FaultyUpstream(text="Hello from upstream.") as up:
        yield up


def write_config(folder: Path, upstream: FaultyUpstream) -> Path:
    config = folder / "tether.yaml"
    config.write_text(CONFIG.format(up=upstream.base_url))
    return config


def load_schema(gateway: GatewayProcess) -> Any:
    return schemathesis.openapi.from_url(f"{gateway.root}{OPENAPI_PATH}")


@pytest.fixture(scope="module")
def local_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream
) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("local"), upstream)
    with GatewayProcess(config) as process:
        yield Gateway(process, load_schema(process))


@pytest.fixture(scope="module")
def keyed_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream
) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("keyed"), upstream)
    created = tether_cli("keys", "create", "--config", str(config), "--scope", FEATURE)
    assert created.returncode == 0, created.stderr
    key = next(word for word in created.stdout.split() if word.startswith("tth_"))

    def credentials(path: str) -> dict[str, str]:
        if path.startswith(("/admin/", "/metrics")):
            return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return {"Authorization": f"Bearer {key}"} if needs_a_key(path) else {}

    env = {"TETHER_ADMIN_TOKEN": ADMIN_TOKEN}
    with GatewayProcess(config, env=env) as process:
        trace_id = stored_trace(process, credentials)
        yield Gateway(process, load_schema(process), credentials=credentials, trace_id=trace_id)


def stored_trace(gateway: GatewayProcess, credentials: Callable[[str], dict[str, str]]) -> str:
    """Make one call and wait until its trace is stored; returns its id."""
    call = requests.post(
        f"{gateway.root}/v1/features/{FEATURE}/run",
        json={"variables": {"message": "Hi!"}},
        headers=credentials("/v1/"),
        timeout=30,
    )
    assert call.status_code == 200, call.text
    trace_id = str(call.headers["x-tether-trace-id"])
    url, admin = f"{gateway.root}/admin/traces/{trace_id}", credentials("/admin/")
    deadline = time.monotonic() + 30
    while requests.get(url, headers=admin, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the trace was not stored within 30 s"
        time.sleep(0.1)
    return trace_id


@pytest.fixture(scope="module")
def keyless_calls(keyed_gateway: Gateway) -> Gateway:
    """The keyed gateway, called without any credentials: protected operations must be 401."""
    keyed = keyed_gateway
    return Gateway(keyed.process, keyed.schema, expect_401=needs_a_key, trace_id=keyed.trace_id)


def error_envelope(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx is ``{"error": {"message", "type", "param", "code"}}``, sent as JSON."""
    if not 400 <= response.status_code < 500:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"a 4xx sent as {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the envelope: {body!r}"
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, f"not the envelope: {body!r}"
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["type"], str) and error["type"], body
    assert all(error[k] is None or isinstance(error[k], str) for k in ("param", "code")), body


CHECKS = [
    not_a_server_error,
    error_envelope,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def unauthorised(expect_401: bool) -> Callable[..., None]:
    def a_401_without_a_key(
        ctx: Any, response: schemathesis.Response, case: schemathesis.Case
    ) -> None:
        if expect_401:
            assert response.status_code == 401, (
                f"expected a 401 without a key, got {response.status_code}: {response.text[:300]}"
            )

    return a_401_without_a_key


def aim_at(case: schemathesis.Case, feature: str, trace_id: str | None) -> None:
    """Name a configured feature and a stored trace (schemathesis's own names are 404s), so
    the generated messages, tools, formats and variables go through the pipeline to the
    upstream, and a stored trace is read back."""
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = feature
    parameters = case.path_parameters or {}
    for name in ("name", "model_id"):
        if name in parameters:
            parameters[name] = feature
    if "trace_id" in parameters and trace_id is not None:
        parameters["trace_id"] = trace_id


def drop_credentials(case: schemathesis.Case) -> None:
    """schemathesis makes up a bearer token for a documented scheme; a keyless call has none."""
    for name in [n for n in case.headers or {} if n.lower() in ("authorization", "x-api-key")]:
        del case.headers[name]


def fuzz(gateway: Gateway, method: str, path: str, mode: schemathesis.GenerationMode) -> None:
    operation = gateway.schema[path][method]
    headers = gateway.credentials(path)
    keyless = gateway.expect_401(path)
    checks = [*CHECKS, unauthorised(keyless)]
    session = requests.Session()

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @hypothesis.given(
        case=operation.as_strategy(generation_mode=mode),
        feature=st.sampled_from([None, *FEATURES]),
    )
    def run(case: schemathesis.Case, feature: str | None) -> None:
        if feature is not None:
            aim_at(case, feature, gateway.trace_id)
        if keyless:
            drop_credentials(case)
        root = gateway.process.root
        response = case.call(base_url=root, session=session, headers=headers, timeout=60)
        case.validate_response(response, checks=checks, headers=headers)

    with session:
        run()


def test_the_gateway_serves_its_document(local_gateway: Gateway) -> None:
    response = requests.get(f"{local_gateway.process.root}{OPENAPI_PATH}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == build_document()


@pytest.mark.parametrize(("method", "path", "mode"), operations(POSITIVE, NEGATIVE))
def test_local_mode(
    local_gateway: Gateway, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    fuzz(local_gateway, method, path, mode)


@pytest.mark.parametrize(("method", "path", "mode"), operations(POSITIVE, NEGATIVE))
def test_with_keys(
    keyed_gateway: Gateway, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    fuzz(keyed_gateway, method, path, mode)


@pytest.mark.parametrize(("method", "path", "mode"), operations(POSITIVE))
def test_without_a_key_when_keys_exist(
    keyless_calls: Gateway, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    fuzz(keyless_calls, method, path, mode)

"""The gateway's OpenAPI 3.1 document, served at ``GET /openapi.json``.

The schemas are generated from the models that define the wire: requests from
:mod:`tether.gateway.wire` (the same models that validate them), responses from
:mod:`tether.gateway.responses`; every error is the one ``ErrorEnvelope``. This module writes
the paths. ``create_app`` builds the document once per app; a unit test checks that every route
in the app's table is described here, so add a route here when you add one there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from tether._version import __version__
from tether.gateway import wire
from tether.gateway.asgi import Handler
from tether.gateway.auth import ADMIN_TOKEN_ENV
from tether.gateway.completions import CompletionRequest
from tether.gateway.embeddings import EmbeddingsRequest
from tether.gateway.responses import RESPONSE_MODELS
from tether.gateway.responses_wire import ResponsesRequest

OPENAPI_PATH = "/openapi.json"
SCHEMAS = "#/components/schemas/"
JSON = "application/json"
Operation = dict[str, Any]

# status -> (component name, what it means); each is an ErrorEnvelope response
ERRORS: Mapping[int, tuple[str, str]] = {
    400: (
        "BadRequest",
        "The request is invalid (the message names the field), or a guard blocked it.",
    ),
    401: ("Unauthorized", "No API key, or an unknown or revoked one (admin: no admin token)."),
    403: (
        "Forbidden",
        "The key may not call this feature, the admin token is wrong or admin "
        "endpoints are disabled, or (local mode) the request is not from this machine.",
    ),
    404: ("NotFound", "No such feature (or trace, or stored response)."),
    409: ("Conflict", "The answer is held for human review (`review_required`)."),
    413: ("PayloadTooLarge", "The body is larger than `gateway.max_body_bytes`."),
    415: ("UnsupportedMediaType", "The body is not sent as `application/json`."),
    422: ("UnprocessableEntity", "A variable the feature's prompt needs is missing."),
    424: (
        "FailedDependency",
        "Every upstream failed and the feature says `on_failure: {raise: true}`; or only the "
        "failure path was left and the request needs structured output or a tool call "
        "(`response_format` `json_schema` / `json_object`, `tool_choice` `required` or a named "
        "function) that the feature's `on_failure.respond_json` cannot give (code "
        "`structured_output_unavailable`, sent with `x-should-retry: false`).",
    ),
    429: (
        "TooManyRequests",
        "A rate limit (code `rate_limit_exceeded`) or a budget whose feature says "
        "`budgets.on_exceeded: reject` (code `budget_exceeded`) was hit; `Retry-After` says "
        "when to try again (a request too big for its `request` budget says "
        "`x-should-retry: false` instead).",
    ),
}
# the request headers every feature call reads (who the call is for; the cache)
CALL_HEADERS: Mapping[str, str] = {
    "x-tether-user": "The end user (budgets, rate limits and a user-scoped cache count per "
    "user); the body's `user` field, when sent, wins.",
    "x-tether-tenant": "The tenant, for a key created without `--tenant` (a key's own tenant "
    "always applies: naming another is a 403).",
    "Cache-Control": "`no-cache` or `no-store`: the feature's cache neither answers nor "
    "keeps this call.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMAS + name}


def _component_schemas() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (wire.ChatRequest, "validation"),
        (wire.NativeRunRequest, "validation"),
        (CompletionRequest, "validation"),
        (EmbeddingsRequest, "validation"),
        (ResponsesRequest, "validation"),
        *((model, "serialization") for model in RESPONSE_MODELS),
    ]
    _, top = models_json_schema(models, ref_template=SCHEMAS + "{model}")
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/{ERRORS[s][0]}"} for s in statuses}


def _ok(description: str, schema: str, **more: Any) -> dict[str, Any]:
    """A JSON success response carrying tether's headers."""
    return {
        "description": description,
        "headers": _headers(),
        "content": {JSON: {"schema": _ref(schema)}, **more},
    }


def _headers() -> dict[str, Any]:
    return {
        name: {"$ref": f"#/components/headers/{name}"}
        for name in (
            "x-tether-trace-id",
            "x-tether-overhead-ms",
            "x-tether-degraded",
            "x-tether-cache",
            "Retry-After",
        )
    }


def _call_headers() -> list[dict[str, Any]]:
    """The request headers of a feature call, as OpenAPI parameters (user and tenant ids are
    at most 256 characters)."""
    return [
        {
            "name": name,
            "in": "header",
            "required": False,
            "description": text,
            "schema": {"type": "string"}
            if name == "Cache-Control"
            else {
                "type": "string",
                "maxLength": 256,
            },
        }
        for name, text in CALL_HEADERS.items()
    ]


def _json_body(schema: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(schema), "example": example}}}


def _feature_paths(api_key: list[dict[str, list[str]]]) -> dict[str, Any]:
    event = {"anyOf": [_ref("ChatCompletionChunk"), _ref("StreamError")]}
    stream = _sse(
        "With `stream: true`, each event: a `chat.completion.chunk`, then `[DONE]`; a stream "
        "that breaks after its first token ends with an `error` event.",
        event,
    )
    call_errors = _errors(400, 401, 403, 404, 409, 413, 415, 422, 424, 429)
    chat: Operation = {
        "operationId": "createChatCompletion",
        "summary": "OpenAI chat completions; `model` names a feature (or `feature:variant`, "
        "or one of the feature's `aliases`).",
        "description": f"`{wire.VARIABLES_FIELD}` (an object) adds variables to the "
        "feature's prompt template; the last user message is its `message`. Content parts "
        "(`text`, `image_url`, `input_audio`, `file`) and `developer` messages reach the "
        "upstream as sent; `max_completion_tokens` goes up under that name. `n` (1 to "
        f"{wire.MAX_CHOICES}) runs the feature `n` times, each run guarded and traced "
        "(`tether.trace_ids`); streamed, each choice's chunks carry its `index`. The answer's "
        "`model` is the model that answered, as its upstream named it.",
        "tags": ["openai"],
        "security": api_key,
        "parameters": _call_headers(),
        "requestBody": _json_body(
            "ChatRequest", {"model": "assistant", "messages": [{"role": "user", "content": "Hi!"}]}
        ),
        "responses": {
            "200": _ok("The answer (degraded answers say so).", "ChatCompletion", **stream),
            **call_errors,
        },
    }
    run: Operation = {
        "operationId": "runFeature",
        "summary": "Run a feature natively: variables in, the Result out.",
        "description": "The body is JSON (`{}` runs the feature without variables).",
        "tags": ["tether"],
        "security": api_key,
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "description": "The feature.",
                "schema": {"type": "string", "minLength": 1},
                "example": "assistant",
            },
            *_call_headers(),
        ],
        "requestBody": _json_body("NativeRunRequest", {"variables": {"message": "Hi!"}}),
        "responses": {"200": _ok("The Result.", "RunResult"), **call_errors},
    }
    models: Operation = {
        "operationId": "listModels",
        "summary": "The features the caller's key may call.",
        "tags": ["openai"],
        "security": api_key,
        "responses": {"200": _ok("The features.", "ModelList"), **_errors(401, 403)},
    }
    return {
        "/v1/chat/completions": {"post": chat},
        "/v1/models": {"get": models},
        "/v1/completions": {"post": _completions(api_key, call_errors)},
        "/v1/embeddings": {"post": _embeddings(api_key)},
        "/v1/responses": {"post": _responses(api_key, call_errors)},
        "/v1/responses/{response_id}": _stored_response(api_key),
        "/v1/models/{model_id}": {"get": _retrieve_model(api_key)},
        "/v1/features/{name}/run": {"post": run},
    }


def _sse(description: str, event: dict[str, Any]) -> dict[str, Any]:
    """A ``text/event-stream`` response whose ``data`` is ``event`` as JSON, or ``[DONE]``."""
    data = {"anyOf": [{"const": "[DONE]"}, {"contentMediaType": JSON, "contentSchema": event}]}
    return {
        "text/event-stream": {
            "schema": {
                "description": description,
                "type": "object",
                "required": ["data"],
                "properties": {"data": data},
            }
        }
    }


def _completions(api_key: list[dict[str, list[str]]], errors: dict[str, Any]) -> Operation:
    event = {"anyOf": [_ref("TextCompletion"), _ref("StreamError")]}
    stream = _sse(
        "With `stream: true`, each event: a `text_completion` piece, then `[DONE]`; a stream "
        "that breaks after its first token ends with an `error` event.",
        event,
    )
    return {
        "operationId": "createCompletion",
        "summary": "OpenAI (legacy) completions: the `prompt` is the user message of a "
        "feature's call (`model` names the feature, or `feature:variant`).",
        "description": "Runs exactly like a chat request with one user message. Several "
        "prompts, token-id prompts, `echo`, `suffix`, `best_of` and `n` above 1 are refused "
        f"(400 naming the field). `{wire.VARIABLES_FIELD}` (an object) adds variables to the "
        "feature's prompt template; the prompt is its `message`.",
        "tags": ["openai"],
        "security": api_key,
        "parameters": _call_headers(),
        "requestBody": _json_body("CompletionRequest", {"model": "assistant", "prompt": "Hi!"}),
        "responses": {
            "200": _ok("The answer (degraded answers say so).", "TextCompletion", **stream),
            **errors,
        },
    }


def _embeddings(api_key: list[dict[str, list[str]]]) -> Operation:
    return {
        "operationId": "createEmbedding",
        "summary": "OpenAI embeddings; `model` names an embedding feature (`kind: embedding`).",
        "description": "Each text goes through the feature's input guards, model chain and "
        "failure path; the vectors come back in input order. Token-id arrays are refused (400); "
        "so is a chat feature (400 naming its kind). `encoding_format: base64` sends each "
        "vector as little-endian float32 bytes in base64, as OpenAI does.",
        "tags": ["openai"],
        "security": api_key,
        "parameters": _call_headers(),
        "requestBody": _json_body(
            "EmbeddingsRequest", {"model": "search-embed", "input": ["first text", "second"]}
        ),
        "responses": {
            "200": _ok("The embeddings (degraded answers say so).", "EmbeddingList"),
            **_errors(400, 401, 403, 404, 413, 415, 424, 429),
        },
    }


def _responses(api_key: list[dict[str, list[str]]], errors: dict[str, Any]) -> Operation:
    event = {"contentMediaType": JSON, "contentSchema": _ref("ResponseStreamEvent")}
    stream = {
        "text/event-stream": {
            "schema": {
                "description": "With `stream: true`: events with an `event:` line naming "
                "their `type`, numbered by `sequence_number`, ending with `response.completed` "
                "(or `response.incomplete`); a stream that breaks after its first token ends "
                "with an `error` event.",
                "type": "object",
                "required": ["data"],
                "properties": {"event": {"type": "string"}, "data": event},
            }
        }
    }
    return {
        "operationId": "createResponse",
        "summary": "OpenAI Responses API; `model` names a feature (or `feature:variant`).",
        "description": "`input` (a string or message, `function_call` and "
        "`function_call_output` items) runs through the feature like a chat request; "
        "`instructions` is a developer message after the feature's own system prompt; "
        "`text.format` asks for structured output. Unless `store: false` the response is "
        "stored before it is returned, and `previous_response_id` continues it (only with the "
        "API key that stored it; 404 `response_not_found` otherwise). Hosted tools, `prompt` "
        "and `conversation` are refused (400 naming the field).",
        "tags": ["openai"],
        "security": api_key,
        "parameters": _call_headers(),
        "requestBody": _json_body("ResponsesRequest", {"model": "assistant", "input": "Hi!"}),
        "responses": {
            "200": _ok("The response (degraded answers say so).", "ResponseObject", **stream),
            **errors,
        },
    }


def _stored_response(api_key: list[dict[str, list[str]]]) -> dict[str, Operation]:
    parameter = {
        "name": "response_id",
        "in": "path",
        "required": True,
        "description": "The response's `id` (`resp_...`).",
        "schema": {"type": "string", "minLength": 1},
    }
    get: Operation = {
        "operationId": "retrieveResponse",
        "summary": "A stored response, for the API key that stored it.",
        "tags": ["openai"],
        "security": api_key,
        "parameters": [parameter],
        "responses": {"200": _ok("The response.", "ResponseObject"), **_errors(401, 404)},
    }
    delete: Operation = {
        "operationId": "deleteResponse",
        "summary": "Delete a stored response (only the API key that stored it can).",
        "tags": ["openai"],
        "security": api_key,
        "parameters": [parameter],
        "responses": {"200": _ok("Deleted.", "ResponseDeleted"), **_errors(401, 404)},
    }
    return {"get": get, "delete": delete}


def _retrieve_model(api_key: list[dict[str, list[str]]]) -> Operation:
    return {
        "operationId": "retrieveModel",
        "summary": "One feature the caller's key may call, as a model.",
        "tags": ["openai"],
        "security": api_key,
        "parameters": [
            {
                "name": "model_id",
                "in": "path",
                "required": True,
                "description": "A feature name.",
                "schema": {"type": "string", "minLength": 1},
            }
        ],
        "responses": {"200": _ok("The feature.", "ModelCard"), **_errors(401, 403, 404)},
    }


def _ops_paths() -> dict[str, Any]:
    metrics: Operation = {
        "operationId": "metrics",
        "summary": f"Prometheus metrics; needs the admin token when {ADMIN_TOKEN_ENV} is set.",
        "tags": ["operations"],
        "security": [{"adminToken": []}, {}],
        "responses": {
            "200": {
                "description": "The Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **_errors(401, 403),
        },
    }
    return {
        "/healthz": {"get": _open("healthz", "Liveness.", _ok("Alive.", "Health"))},
        "/readyz": {
            "get": _open(
                "readyz",
                "Readiness: the store and the state backend answer and the trace writer runs "
                "(an unreachable state backend under `fail_open` reads `degraded: ...`, ready).",
                _ok("Ready.", "Readiness"),
                {"503": _ok("Not ready; `checks` says what failed.", "Readiness")},
            )
        },
        "/metrics": {"get": metrics},
        OPENAPI_PATH: {
            "get": _open(
                "openapi",
                "This document.",
                {"description": "OpenAPI 3.1.", "content": {JSON: {"schema": {"type": "object"}}}},
            )
        },
    }


def _open(operation_id: str, summary: str, ok: dict[str, Any], more: Any = None) -> Operation:
    """An operation anyone may call."""
    responses = {"200": ok, **(more or {})}
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": ["operations"],
        "security": [],
        "responses": responses,
    }


def _admin_paths() -> dict[str, Any]:
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]

    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }

    text = {"type": "string"}
    duration = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhdwSMHDW]\s*$"}
    since = {"anyOf": [duration, {"type": "string", "format": "date-time"}]}
    traces: Operation = {
        "operationId": "listTraces",
        "summary": "Stored traces, newest first, filtered.",
        "tags": ["admin"],
        "security": admin,
        "parameters": [
            query("feature", text, "Only this feature."),
            query("variant", text, "Only this variant."),
            query("user", text, "Only this end user."),
            query("degraded", {"type": "boolean"}, "Only degraded (true) or normal (false)."),
            query("since", since, "A duration ago (`10m`, `2h`, `1d`, `1w`) or an ISO 8601 time."),
            query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                "At most this many.",
            ),
        ],
        "responses": {"200": _ok("The traces.", "TraceList"), **_errors(400, 401, 403)},
    }
    trace: Operation = {
        "operationId": "getTrace",
        "summary": "One stored trace with its attempts and events.",
        "tags": ["admin"],
        "security": admin,
        "parameters": [
            {
                "name": "trace_id",
                "in": "path",
                "required": True,
                "description": "The trace id, or a unique prefix of at least 4 characters.",
                "schema": {"type": "string", "minLength": 1},
            }
        ],
        "responses": {"200": _ok("The trace.", "StoredTrace"), **_errors(401, 403, 404)},
    }
    budgets: Operation = {
        "operationId": "budgetStatus",
        "summary": "Where each budget stands: spent, reserved, limit, mode and reset time per "
        "feature and scope (`tether budgets status` prints the same).",
        "tags": ["admin"],
        "security": admin,
        "parameters": [
            query("feature", text, "Only this feature (default: every feature with budgets)."),
            query("user", text, "The user whose `user` budgets to show."),
            query("tenant", text, "The tenant whose `tenant` budgets to show."),
            query("key", text, "The API key id whose `key` budgets to show."),
        ],
        "description": "A 424 with code `state_unavailable` when the state backend (Redis) "
        "cannot be read.",
        "responses": {
            "200": _ok("The budgets.", "BudgetReport"),
            **_errors(400, 401, 403, 404, 424),
        },
    }
    return {
        "/admin/traces": {"get": traces},
        "/admin/traces/{trace_id}": {"get": trace},
        "/admin/budgets": {"get": budgets},
    }


def _components() -> dict[str, Any]:
    envelope = {JSON: {"schema": _ref("ErrorEnvelope")}}
    headers = {
        "x-tether-trace-id": "The call's trace id (`GET /admin/traces/{trace_id}`).",
        "x-tether-overhead-ms": "Time tether added, in milliseconds.",
        "x-tether-degraded": "Present on a degraded answer: the reason.",
        "x-tether-cache": "On a call of a feature with a cache: `hit`, `miss` or `bypass`.",
        "Retry-After": "On a 429 from a budget or rate limit: whole seconds to wait.",
    }
    return {
        "schemas": _component_schemas(),
        "responses": {
            name: {"description": text, "headers": _headers(), "content": envelope}
            for name, text in ERRORS.values()
        },
        "headers": {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        },
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "A key from `tether keys create --scope FEATURE` (`tth_...`). "
                "Until the first key is created the gateway runs in local mode: no key needed.",
            },
            "apiKeyHeader": {
                "type": "apiKey",
                "in": "header",
                "name": "x-api-key",
                "description": "The same key, in `x-api-key`.",
            },
            "adminToken": {
                "type": "http",
                "scheme": "bearer",
                "description": f"The value of {ADMIN_TOKEN_ENV} the gateway was started with.",
            },
        },
    }


def build_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    api_key: list[dict[str, list[str]]] = [{"apiKey": []}, {"apiKeyHeader": []}, {}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tether gateway",
            "version": __version__,
            "description": "tether's pipeline behind an OpenAI-compatible API. Every error is "
            "the OpenAI error envelope; 5xx means tether itself is broken.",
        },
        "paths": {**_feature_paths(api_key), **_ops_paths(), **_admin_paths()},
        "components": _components(),
    }


def openapi_handler() -> Handler:
    """``GET /openapi.json``, answering with the document built now, once."""
    body = json.dumps(build_document(), separators=(",", ":")).encode()

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type=JSON)

    return openapi_json

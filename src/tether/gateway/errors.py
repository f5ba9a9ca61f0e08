"""The one place where tether's errors become HTTP statuses and the OpenAI error envelope.

    {"error": {"message": "...", "type": "...", "param": null, "code": "<reason>"}}

``code`` is tether's stable ``reason``. 5xx means tether itself is broken; everything the caller
or an upstream did maps to a 4xx (a failed upstream normally never gets here: the feature's
failure path answers instead, unless the feature says ``on_failure: {raise: true}``: 424). A
request that needs structured output or a tool call, when only the failure path was left and
the feature has no ``respond_json`` for it, is 424 too, with code
``structured_output_unavailable`` and ``x-should-retry: false`` (tether already retried and
fell back within the call; the OpenAI SDKs do not retry a 424 and honour that header).
"""

from __future__ import annotations

from typing import Any

from tether.errors import (
    AuthenticationFailed,
    BudgetExceeded,
    FeatureFailed,
    FeatureNotFound,
    GuardBlocked,
    InvalidRequest,
    MissingVariable,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ResponseNotFound,
    ReviewRequired,
    StructuredOutputUnavailable,
    TetherError,
    UnsupportedMediaType,
)

# (error class, HTTP status, OpenAI error type), most specific first
STATUS_MAP: tuple[tuple[type[TetherError], int, str], ...] = (
    (FeatureNotFound, 404, "invalid_request_error"),
    (ResponseNotFound, 404, "invalid_request_error"),
    (PayloadTooLarge, 413, "invalid_request_error"),
    (UnsupportedMediaType, 415, "invalid_request_error"),
    (MissingVariable, 422, "invalid_request_error"),
    (InvalidRequest, 400, "invalid_request_error"),
    (AuthenticationFailed, 401, "authentication_error"),
    (PermissionDenied, 403, "permission_error"),
    (BudgetExceeded, 429, "rate_limit_exceeded"),
    (GuardBlocked, 400, "invalid_request_error"),
    (ReviewRequired, 409, "review_required"),
)


def status_for(error: TetherError) -> tuple[int, str]:
    if isinstance(error, FeatureFailed):
        if isinstance(error.cause, RateLimited | BudgetExceeded):
            return 429, "rate_limit_exceeded"
        return 424, "upstream_failed"
    for cls, status, kind in STATUS_MAP:
        if isinstance(error, cls):
            return status, kind
    return 500, "internal_error"


def advice_headers(error: TetherError) -> dict[str, str]:
    """Headers that tell a client what to do about ``error``."""
    if isinstance(error, StructuredOutputUnavailable):
        return {"x-should-retry": "false"}
    return {}


def envelope(error: TetherError) -> tuple[int, dict[str, Any]]:
    status, kind = status_for(error)
    param = error.param if isinstance(error, InvalidRequest) else None
    body = {"error": {"message": error.message, "type": kind, "param": param, "code": error.reason}}
    return status, body


def internal_envelope(trace_id: str | None) -> dict[str, Any]:
    where = f" (trace {trace_id})" if trace_id else ""
    return {
        "error": {
            "message": f"tether hit an internal error{where}; the gateway log has the details",
            "type": "internal_error",
            "param": None,
            "code": "internal_error",
        }
    }

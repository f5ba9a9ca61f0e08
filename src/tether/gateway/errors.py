"""The one place where tether's errors become HTTP statuses and the OpenAI error envelope.

    {"error": {"message": "...", "type": "...", "param": null, "code": "<reason>"}}

``code`` is tether's stable ``reason``. 5xx means tether itself is broken; everything the caller
or an upstream did maps to a 4xx (a failed upstream normally never gets here: the feature's
failure path answers instead, unless the feature says ``on_failure: {raise: true}``: 424). A
request that needs structured output or a tool call, when only the failure path was left and
the feature has no ``respond_json`` for it, is 424 too, with code
``structured_output_unavailable`` and ``x-should-retry: false`` (tether already retried and
fell back within the call; the OpenAI SDKs do not retry a 424 and honour that header).

tether's own limits answer 429 with ``Retry-After`` (whole seconds, rounded up, at least 1):
a rate limit (code ``rate_limit_exceeded``) and a hard budget of a feature that says
``budgets.on_exceeded: reject`` (code ``budget_exceeded``; Retry-After is when the budget's
period resets). A budget that cannot reset (the ``request`` scope: one call's worst case)
says ``x-should-retry: false`` (and no Retry-After); a wait longer than the OpenAI SDKs
honour (60 s), which they would cut short by retrying within seconds, says it next to
Retry-After. The shared state being
unreachable is never a 5xx: the feature's failure path answers it (reason
``state_unavailable``), or with ``on_failure: {raise: true}`` it is a 424 like any failed call.
"""

from __future__ import annotations

import math
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
    RateLimitExceeded,
    ResponseNotFound,
    ReviewRequired,
    StateUnavailable,
    StructuredOutputUnavailable,
    TetherError,
    UnsupportedMediaType,
)

# the longest Retry-After the OpenAI SDKs wait for; past it they retry on their own short
# backoff, into the same limit, so a longer wait (a daily budget) also says x-should-retry: false
SDK_RETRY_AFTER_MAX_S = 60.0
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
    (RateLimitExceeded, 429, "rate_limit_exceeded"),
    (BudgetExceeded, 429, "rate_limit_exceeded"),
    (StateUnavailable, 424, "upstream_failed"),
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
    """Headers that tell a client what to do about ``error``: ``Retry-After`` on a 429 that
    can pass later, ``x-should-retry: false`` where retrying cannot help."""
    if isinstance(error, StructuredOutputUnavailable):
        return {"x-should-retry": "false"}
    limit = error.cause if isinstance(error, FeatureFailed) else error
    if isinstance(limit, RateLimited | BudgetExceeded):
        if limit.retry_after_s is not None:
            headers = {"retry-after": retry_after(limit.retry_after_s)}
            if limit.retry_after_s > SDK_RETRY_AFTER_MAX_S:
                headers["x-should-retry"] = "false"  # the SDKs would retry within seconds
            return headers
        if isinstance(limit, BudgetExceeded):
            return {"x-should-retry": "false"}  # no period to wait for: the call is too big
    return {}


def retry_after(seconds: float) -> str:
    """``Retry-After`` in whole seconds: rounded up (a client that waits that long finds room)
    and at least 1 (``0`` would tell clients to retry at once, into the same limit)."""
    return str(max(1, math.ceil(seconds)))


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

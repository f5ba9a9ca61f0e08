"""What every gateway handler shares: who the call is for, the call's trace on the request,
tether's response headers, the error response, and reading a JSON body within the size limit.

Who a call is for (:func:`caller`), as budgets, rate limits and a scoped cache count it:

- user: the request's OpenAI ``user`` field, else the ``x-tether-user`` header;
- tenant: the API key's tenant (``tether keys create --tenant T``); a key without one lets
  the caller name it in ``x-tether-tenant``; a caller naming another tenant than its key's
  gets a 403 (a caller never overrides what its key defines);
- key: the API key's id (none in local mode);
- cache: off for this call (neither read nor filled) on ``Cache-Control: no-cache`` or
  ``no-store``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from tether.errors import (
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    TetherError,
    UnsupportedMediaType,
)
from tether.gateway.errors import advice_headers, envelope, retry_after
from tether.pipeline.result import Result
from tether.telemetry.trace import Trace, new_trace_id

if TYPE_CHECKING:
    from tether.store.keys import ApiKey

log = logging.getLogger("tether.gateway")
TRACE_KEY = "tether.trace"  # in the ASGI scope: the call's trace, once the SDK started the call
USER_HEADER = "x-tether-user"
TENANT_HEADER = "x-tether-tenant"
MAX_IDENTITY = 256  # characters of a user or tenant id


def _identity(value: str | None, name: str) -> str | None:
    """A user or tenant id as sent (None when absent or empty); a 400 when it is too long."""
    if value is not None and len(value) > MAX_IDENTITY:
        raise InvalidRequest(
            f"{name}: at most {MAX_IDENTITY} characters (this one has {len(value)}); send a "
            "stable id, not a description",
            param=name,
        )
    return value if value is not None and value.strip() else None


def no_cache(headers: Mapping[str, str]) -> bool:
    """Whether ``Cache-Control`` says ``no-cache`` or ``no-store`` (any case, among others)."""
    directives = headers.get("cache-control", "").lower().split(",")
    return any(d.strip().partition("=")[0] in ("no-cache", "no-store") for d in directives)


def caller(headers: Mapping[str, str], key: ApiKey | None, user: str | None) -> dict[str, Any]:
    """The SDK's ``user``, ``tenant``, ``key`` and ``cache`` arguments for this request (see
    the module docstring); ``user`` is the body's OpenAI ``user`` field. Raises
    PermissionDenied when ``x-tether-tenant`` names another tenant than the key's."""
    asked = _identity(headers.get(TENANT_HEADER), TENANT_HEADER)
    tenant = key.tenant if key is not None else None
    if key is not None and tenant is not None and asked is not None and asked != tenant:
        raise PermissionDenied(
            f"this key ({key.name or key.id}) calls for tenant {tenant!r} and "
            f"cannot call for {asked[:100]!r}; leave {TENANT_HEADER} out, or use a key "
            f"created with `tether keys create --tenant {asked[:100]}`",
            reason="tenant_mismatch",
        )
    return {
        "user": _identity(user, "user") or _identity(headers.get(USER_HEADER), USER_HEADER),
        "tenant": tenant or asked,
        "key": key.id if key is not None else None,
        "cache": not no_cache(headers),
    }


def overhead_ms(trace: Trace) -> float:
    """Time tether added: the call's wall time minus time spent waiting on upstreams."""
    now = trace.now_ms()
    upstream = sum((a.end_ms or now) - a.start_ms for a in trace.attempts)
    return max(0.0, now - upstream)


def tether_headers(
    trace: Trace, degraded: bool, reason: str | None, retry_after_s: float | None = None
) -> dict[str, str]:
    """The ``x-tether-*`` headers of an answer; a degraded one whose cause passes (a budget's
    period, a rate limit) says in how many seconds: ``x-tether-retry-after``."""
    headers = {
        "x-tether-trace-id": trace.id,
        "x-tether-overhead-ms": f"{overhead_ms(trace):.3f}",
    }
    if degraded:
        headers["x-tether-degraded"] = reason or "true"
        if retry_after_s is not None:
            headers["x-tether-retry-after"] = retry_after(retry_after_s)
    if trace.cache is not None:  # the feature has a cache: hit, miss or bypass
        headers["x-tether-cache"] = trace.cache
    return headers


def error_response(error: TetherError, trace: Trace | None = None) -> JSONResponse:
    status, body = envelope(error)
    trace_id = trace.id if trace is not None else None
    headers = tether_headers(trace, False, None) if trace is not None else {}
    headers.update(advice_headers(error))
    if status == 413:
        headers["connection"] = "close"  # the rest of the body is not read
    if status == 500:
        log.error("internal error (trace %s): %s", trace_id, error)
    return JSONResponse(body, status_code=status, headers=headers)


def remember(request: Request, dropped: list[str] | None = None) -> Callable[[Trace], None]:
    """The SDK's ``on_start`` for this request: keep the call's trace on the request (every
    response, an error the handler does not catch too, carries the id of the trace the pipeline
    stores) and note on it the request fields that were ``dropped``."""

    def started(trace: Trace) -> None:
        request.scope[TRACE_KEY] = trace
        if dropped:
            trace.event("fields_dropped", fields=dropped)

    return started


def started_trace(request: Request) -> Trace | None:
    """The trace of the call this request started (None when it never started)."""
    trace: Trace | None = request.scope.get(TRACE_KEY)
    return trace


def result_headers(request: Request, result: Result) -> dict[str, str]:
    trace = started_trace(request)
    assert trace is not None  # a result comes from a call that started
    return tether_headers(trace, result.degraded, result.reason, result.retry_after_s)


def call_trace_id(request: Request) -> str:
    """The id of the trace the pipeline stores for this request (with status ``error`` when
    the pipeline did not end normally); a fresh id when the pipeline had not started."""
    trace = started_trace(request)
    return trace.id if trace is not None else new_trace_id()


def require_json(headers: Mapping[str, str]) -> None:
    """API bodies are JSON, declared as such: a browser cannot send that cross-site without
    asking first (CORS preflight), so a form or ``text/plain`` post from another site fails."""
    declared = headers.get("content-type", "")
    if declared.partition(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"send the body as JSON with `content-type: application/json` (this request says "
            f"{declared[:80]!r})"
            if declared
            else "send the body as JSON with `content-type: application/json` (this request "
            "has no content-type)"
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, counted as it arrives: past ``limit`` bytes (declared or sent) it is a 413
    at once, and the rest is never read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the body is {declared} bytes; the limit is {limit} (gateway.max_body_bytes)"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body is over {limit} bytes, the limit (gateway.max_body_bytes)"
            )
        chunks.append(chunk)
    return b"".join(chunks)

"""The gateway: tether's pipeline behind an OpenAI-compatible HTTP API.

``create_app(settings)`` builds the ASGI app and does no I/O; the store is opened, migrated and
the trace writer started when the app starts (lifespan), and flushed when it stops.

Routes:
    POST /v1/chat/completions       OpenAI wire format; ``model`` names a feature
    GET  /v1/models                 the features the key may call
    GET  /v1/models/{model_id}      one of them (404 unknown, 403 outside the key's scopes)
    POST /v1/features/{name}/run    native call: variables in, Result out
    GET  /healthz, /readyz          liveness; readiness checks the store
    GET  /metrics                   Prometheus (admin token, when one is set)
    GET  /admin/traces[/{id}]       stored traces (admin token)
    GET  /openapi.json              this API as OpenAPI 3.1 (``tether.gateway.openapi``)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tether.errors import InvalidRequest, PayloadTooLarge, TetherError, UnsupportedMediaType
from tether.gateway import wire
from tether.gateway.asgi import App, Handler, Route
from tether.gateway.auth import Authenticator
from tether.gateway.cors import Cors
from tether.gateway.errors import envelope, internal_envelope
from tether.gateway.openapi import OPENAPI_PATH, openapi_handler
from tether.gateway.runtime import GatewayRuntime, GatewaySettings
from tether.pipeline.result import Result, StreamChunk
from tether.store.traces import parse_since
from tether.telemetry.metrics import PrometheusMetrics
from tether.telemetry.trace import Trace, new_trace_id

log = logging.getLogger("tether.gateway")
TRACE_KEY = "tether.trace"  # in the ASGI scope: the call's trace, once the SDK started the call


def overhead_ms(trace: Trace) -> float:
    """Time tether added: the call's wall time minus time spent waiting on upstreams."""
    now = trace.now_ms()
    upstream = sum((a.end_ms or now) - a.start_ms for a in trace.attempts)
    return max(0.0, now - upstream)


def tether_headers(trace: Trace, degraded: bool, reason: str | None) -> dict[str, str]:
    headers = {
        "x-tether-trace-id": trace.id,
        "x-tether-overhead-ms": f"{overhead_ms(trace):.3f}",
    }
    if degraded:
        headers["x-tether-degraded"] = reason or "true"
    return headers


def error_response(error: TetherError, trace: Trace | None = None) -> JSONResponse:
    status, body = envelope(error)
    trace_id = trace.id if trace is not None else None
    headers = tether_headers(trace, False, None) if trace is not None else {}
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
    return tether_headers(trace, result.degraded, result.reason)


def guarding(metrics: PrometheusMetrics) -> Callable[[Handler], Handler]:
    """The wrapper of every handler: every tether error becomes the OpenAI envelope; a client
    that goes away before its body is read is counted (``tether_client_disconnects_total``)
    and logged in one line; anything else is a logged 500 carrying the call's trace id. Every
    response carries ``x-tether-trace-id`` and ``x-tether-overhead-ms`` (a request that never
    reached the pipeline gets a fresh id and its whole handling time as overhead)."""

    def guarded(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except TetherError as exc:
                response = error_response(exc, request.scope.get(TRACE_KEY))
            except ClientDisconnect:
                metrics.client_disconnects.inc()
                log.info(
                    "client went away before sending its whole request: %s %s",
                    request.method,
                    request.url.path,
                )
                gone = InvalidRequest("the client closed the connection", reason="client_gone")
                response = error_response(gone)
            except Exception:
                trace_id = call_trace_id(request)
                log.exception(
                    "unhandled error in %s %s (trace %s)",
                    request.method,
                    request.url.path,
                    trace_id,
                )
                response = JSONResponse(internal_envelope(trace_id), status_code=500)
                response.headers["x-tether-trace-id"] = trace_id
            if "x-tether-trace-id" not in response.headers:
                response.headers["x-tether-trace-id"] = new_trace_id()
            if "x-tether-overhead-ms" not in response.headers:
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                response.headers["x-tether-overhead-ms"] = f"{elapsed_ms:.3f}"
            return response

        return wrapped

    return guarded


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


class Routes:
    """The HTTP handlers, sharing one runtime."""

    def __init__(self, runtime: GatewayRuntime) -> None:
        self.rt = runtime

    @property
    def auth(self) -> Authenticator:
        return self.rt.auth

    async def chat_completions(self, request: Request) -> Response:
        key = await self.auth.key(request.headers)
        require_json(request.headers)
        body = await read_body(request, self.rt.settings.max_body_bytes)
        chat = wire.parse_body(wire.ChatRequest, body)
        feature, _, _variant = chat.model.partition(":")
        self.auth.check_scope(key, feature)
        # the caller's conversation and the fields that pass through (those dropped named on
        # the trace); the SDK caps ``max_tokens`` at the feature's
        extra, dropped = wire.passed_extra(chat)
        variables: dict[str, Any] = {"message": wire.last_user_text(chat)}
        variables.update(wire.template_variables(chat))
        asked = wire.to_model_request(chat, extra)
        tether, started = self.rt.tether, remember(request, dropped)
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            chunks = tether.stream(
                feature,
                variables,
                request=asked,
                user=chat.user,
                metadata=chat.metadata,
                on_start=started,
            )
            return await self._stream(request, chunks, chat.model, include_usage)
        try:
            result = await tether.run(
                feature,
                variables,
                request=asked,
                user=chat.user,
                metadata=chat.metadata,
                on_start=started,
            )
        except TetherError as exc:
            return error_response(exc, started_trace(request))
        return JSONResponse(
            wire.completion(result, chat.model),
            headers=result_headers(request, result),
        )

    async def _stream(
        self,
        request: Request,
        chunks: AsyncIterator[StreamChunk],
        model: str,
        include_usage: bool,
    ) -> Response:
        """Read the first chunk before answering, so a failure before any content (the call
        not starting, too) still gets a proper status (or a degraded header) instead of a
        broken stream."""
        try:
            first = await anext(chunks)
        except TetherError as exc:
            return error_response(exc, started_trace(request))
        trace = started_trace(request)
        assert trace is not None  # the first chunk came from a started call
        headers = tether_headers(trace, first.degraded, first.reason)
        headers["cache-control"] = "no-cache"
        body = self._sse(first, chunks, trace, model, include_usage)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    async def _sse(
        self,
        first: StreamChunk,
        rest: AsyncIterator[StreamChunk],
        trace: Trace,
        model: str,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        yield wire.sse(wire.chunk(trace.id, model, {"role": "assistant", "content": ""}))
        pending: StreamChunk | None = first
        try:
            while pending is not None:
                if pending.done:
                    # close the pipeline's stream first: it hands the trace to the sink (the
                    # crash journal) before the caller sees the end of the answer
                    close = getattr(rest, "aclose", None)
                    if close is not None:
                        await close()
                    for event in self._final_events(pending, trace, model, include_usage):
                        yield event
                    return
                delta: dict[str, Any] = {"content": pending.text} if pending.text else {}
                if pending.tool_calls:
                    delta["tool_calls"] = wire.tool_delta(pending.tool_calls)
                if delta:
                    yield wire.sse(wire.chunk(trace.id, model, delta))
                pending = await anext(rest, None)
        except TetherError as exc:
            _, body = envelope(exc)
            yield wire.sse(body)
            yield wire.sse("[DONE]")
        except Exception:  # the answer has started: an explicit error event, never a cut
            log.exception("unhandled error in a stream (trace %s)", trace.id)
            yield wire.sse(internal_envelope(trace.id))
            yield wire.sse("[DONE]")
        finally:
            close = getattr(rest, "aclose", None)
            if close is not None:
                await close()

    @staticmethod
    def _final_events(
        last: StreamChunk, trace: Trace, model: str, include_usage: bool
    ) -> list[bytes]:
        result = last.result
        assert result is not None
        if last.error is not None:
            # never a silent truncation: an explicit error event the SDKs raise on
            error = {
                "message": f"the stream broke after the answer had started: {last.error}",
                "type": "stream_interrupted",
                "param": None,
                "code": result.reason,
            }
            return [
                wire.sse({"error": error, "tether": wire.tether_facts(result)}),
                wire.sse("[DONE]"),
            ]
        finish = result.finish_reason or "stop"
        events = [
            wire.sse(wire.chunk(trace.id, model, {}, finish, tether=wire.tether_facts(result)))
        ]
        if include_usage:
            usage = wire.wire_usage(result.usage)
            events.append(wire.sse(wire.chunk(trace.id, model, None, usage=usage)))
        events.append(wire.sse("[DONE]"))
        return events

    async def models(self, request: Request) -> Response:
        key = await self.auth.key(request.headers)
        names = [name for name in self.rt.tether.config.features if key is None or key.allows(name)]
        return JSONResponse({"object": "list", "data": [model_card(n) for n in names]})

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{model_id}``: one feature the key may call (404 when no feature has
        that name, 403 when the key's scopes leave it out)."""
        key = await self.auth.key(request.headers)
        name = request.path_params["model_id"]
        self.rt.tether.pipeline.feature(name)  # FeatureNotFound: 404
        self.auth.check_scope(key, name)
        return JSONResponse(model_card(name))

    async def native_run(self, request: Request) -> Response:
        feature = request.path_params["name"]
        await self.auth.require_feature(request.headers, feature)
        require_json(request.headers)
        body = await read_body(request, self.rt.settings.max_body_bytes)
        run = wire.parse_body(wire.NativeRunRequest, body or b"{}")
        try:
            result: Result = await self.rt.tether.run(
                feature,
                run.variables,
                user=run.user,
                metadata=run.metadata,
                on_start=remember(request),
            )
        except TetherError as exc:
            return error_response(exc, started_trace(request))
        return JSONResponse(
            result.to_dict(),
            headers=result_headers(request, result),
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        checks = await self.rt.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def metrics(self, request: Request) -> Response:
        if self.rt.settings.admin_token:
            self.auth.require_admin(request.headers)
        elif await self.auth.local_mode():
            self.auth.check_local(request.headers)
        return Response(self.rt.render_metrics(), media_type=self.rt.metrics.content_type)

    async def admin_traces(self, request: Request) -> Response:
        self.auth.require_admin(request.headers)
        rows = await asyncio.to_thread(self.rt.list_traces, **trace_filters(request.query_params))
        return Response(json.dumps({"data": rows}, default=str), media_type="application/json")

    async def admin_trace(self, request: Request) -> Response:
        self.auth.require_admin(request.headers)
        row = await asyncio.to_thread(self.rt.get_trace, request.path_params["trace_id"])
        if row is None:
            return JSONResponse(
                {
                    "error": {
                        "message": "no such trace",
                        "type": "invalid_request_error",
                        "param": "trace_id",
                        "code": "trace_not_found",
                    }
                },
                status_code=404,
            )
        return Response(json.dumps(row, default=str), media_type="application/json")


def model_card(feature: str) -> dict[str, Any]:
    """A feature as the OpenAI API describes a model."""
    return {"id": feature, "object": "model", "created": 0, "owned_by": "tether"}


def trace_filters(query: Mapping[str, str]) -> dict[str, Any]:
    """``/admin/traces`` query parameters as store filters; InvalidRequest names a bad one."""
    degraded = query.get("degraded")
    if degraded is not None and degraded.lower() not in ("true", "false"):
        raise InvalidRequest("degraded: send true or false", param="degraded")
    limit = query.get("limit", "50")
    if not (limit.isascii() and limit.isdigit() and int(limit) >= 1):
        raise InvalidRequest(
            "limit: send a whole number from 1 (at most 1000 are listed)", param="limit"
        )
    since = query.get("since")
    try:
        moment = parse_since(since) if since else None
    except ValueError as exc:
        raise InvalidRequest(f"since: {exc}", param="since") from None
    return {
        "feature": query.get("feature"),
        "variant": query.get("variant"),
        "user": query.get("user"),
        "degraded": None if degraded is None else degraded.lower() == "true",
        "since": moment,
        "limit": min(int(limit), 1000),
    }


def create_app(settings: GatewaySettings, **runtime_options: Any) -> App:
    """Build the gateway. ``runtime_options`` go to :class:`GatewayRuntime` (e.g. injected
    providers in tests). Nothing is opened until the app starts."""
    runtime = GatewayRuntime(settings, **runtime_options)
    routes = Routes(runtime)
    table = [
        ("POST", "/v1/chat/completions", routes.chat_completions),
        ("GET", "/v1/models", routes.models),
        ("GET", "/v1/models/{model_id}", routes.model),
        ("POST", "/v1/features/{name}/run", routes.native_run),
        ("GET", "/healthz", routes.healthz),
        ("GET", "/readyz", routes.readyz),
        ("GET", "/metrics", routes.metrics),
        ("GET", "/admin/traces", routes.admin_traces),
        ("GET", "/admin/traces/{trace_id}", routes.admin_trace),
        ("GET", OPENAPI_PATH, openapi_handler()),
    ]
    guarded, cors = guarding(runtime.metrics), Cors(settings.config.gateway.cors)
    app = App(
        [Route(method, path, handler) for method, path, handler in table],
        startup=runtime.start,
        shutdown=runtime.stop,
        wrap=lambda handler: cors.wrap(handler, guarded),
    )
    app.state["runtime"] = runtime
    return app


__all__ = ["create_app", "overhead_ms"]

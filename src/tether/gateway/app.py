"""The gateway: tether's pipeline behind an OpenAI-compatible HTTP API.

``create_app(settings)`` builds the ASGI app and does no I/O; the store is opened, migrated and
the trace writer started when the app starts (lifespan), and flushed when it stops.

Routes:
    POST /v1/chat/completions       OpenAI wire format; ``model`` names a feature
    POST /v1/completions            legacy completions: the prompt as the user message
    POST /v1/embeddings             OpenAI embeddings; ``model`` names a ``kind: embedding`` feature
    POST /v1/responses              OpenAI Responses API on a feature (stored unless store: false)
    GET  /v1/responses/{id}         a stored response, for the key that stored it (DELETE: gone)
    GET  /v1/models                 the features the key may call
    GET  /v1/models/{model_id}      one of them (404 unknown, 403 outside the key's scopes)
    POST /v1/features/{name}/run    native call: variables in, Result out
    GET  /healthz, /readyz          liveness; readiness checks the store and the state backend
    GET  /metrics                   Prometheus (admin token, when one is set)
    GET  /admin/traces[/{id}]       stored traces (admin token)
    GET  /admin/budgets             where budgets stand per feature and scope (admin token)
    GET  /openapi.json              this API as OpenAPI 3.1 (``tether.gateway.openapi``)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from tether.errors import InvalidRequest, TetherError
from tether.gateway import wire
from tether.gateway.asgi import App, Handler, Route
from tether.gateway.auth import Authenticator
from tether.gateway.budgets import budgets_handler
from tether.gateway.chat import chat_handler
from tether.gateway.completions import completions_handler
from tether.gateway.cors import Cors
from tether.gateway.embeddings import embeddings_handler
from tether.gateway.errors import internal_envelope
from tether.gateway.http import (
    TRACE_KEY,
    call_trace_id,
    caller,
    error_response,
    overhead_ms,
    read_body,
    remember,
    require_json,
    result_headers,
    started_trace,
)
from tether.gateway.openapi import OPENAPI_PATH, openapi_handler
from tether.gateway.responses_api import delete_handler, responses_handler, retrieve_handler
from tether.gateway.runtime import GatewayRuntime, GatewaySettings
from tether.pipeline.result import Result
from tether.store.traces import parse_since
from tether.telemetry.metrics import PrometheusMetrics
from tether.telemetry.trace import new_trace_id

log = logging.getLogger("tether.gateway")


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


class Routes:
    """The HTTP handlers, sharing one runtime."""

    def __init__(self, runtime: GatewayRuntime) -> None:
        self.rt = runtime

    @property
    def auth(self) -> Authenticator:
        return self.rt.auth

    async def models(self, request: Request) -> Response:
        key = await self.auth.key(request.headers)
        features = self.rt.tether.config.features
        names = [
            listed
            for name, feature in features.items()
            if key is None or key.allows(name)
            for listed in (name, *feature.aliases)
        ]
        return JSONResponse({"object": "list", "data": [model_card(n) for n in names]})

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{model_id}``: one feature the key may call (404 when no feature has
        that name, 403 when the key's scopes leave it out)."""
        key = await self.auth.key(request.headers)
        name = request.path_params["model_id"]
        feature = self.rt.tether.pipeline.feature(name)  # FeatureNotFound: 404 (aliases too)
        self.auth.check_scope(key, feature.name)
        return JSONResponse(model_card(name))

    async def native_run(self, request: Request) -> Response:
        feature = request.path_params["name"]
        canonical = self.rt.tether.pipeline.canonical(feature)
        key = await self.auth.require_feature(request.headers, canonical)
        require_json(request.headers)
        body = await read_body(request, self.rt.settings.max_body_bytes)
        run = wire.parse_body(wire.NativeRunRequest, body or b"{}")
        try:
            result: Result = await self.rt.tether.run(
                feature,
                run.variables,
                metadata=run.metadata,
                on_start=remember(request),
                **caller(request.headers, key, run.user),
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
        """200 when every check is ``ok`` (or ``degraded``: the state backend is unreachable
        but ``fail_open`` serves anyway), else 503 with what failed."""
        checks = await self.rt.readiness()
        ok = all(v == "ok" or v.startswith("degraded") for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def metrics(self, request: Request) -> Response:
        if self.rt.settings.admin_token:
            self.auth.require_admin(request.headers)
        elif await self.auth.local_mode():
            self.auth.check_local(request.headers)
        await self.rt.tether.health.refresh()  # breaker states shared on Redis: read them now
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
        ("POST", "/v1/chat/completions", chat_handler(runtime)),
        ("POST", "/v1/completions", completions_handler(runtime)),
        ("POST", "/v1/embeddings", embeddings_handler(runtime)),
        ("POST", "/v1/responses", responses_handler(runtime)),
        ("GET", "/v1/responses/{response_id}", retrieve_handler(runtime)),
        ("DELETE", "/v1/responses/{response_id}", delete_handler(runtime)),
        ("GET", "/v1/models", routes.models),
        ("GET", "/v1/models/{model_id}", routes.model),
        ("POST", "/v1/features/{name}/run", routes.native_run),
        ("GET", "/healthz", routes.healthz),
        ("GET", "/readyz", routes.readyz),
        ("GET", "/metrics", routes.metrics),
        ("GET", "/admin/traces", routes.admin_traces),
        ("GET", "/admin/traces/{trace_id}", routes.admin_trace),
        ("GET", "/admin/budgets", budgets_handler(runtime)),
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

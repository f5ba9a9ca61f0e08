"""A plain ASGI app: a route table and the lifespan, without a middleware stack.

The gateway's handlers take a Starlette ``Request`` and return a Starlette ``Response`` (both
are thin ASGI helpers); error handling lives in one wrapper (``guarded`` in ``app.py``), so the
generic middleware layers a framework app adds would only cost time on every call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("tether.gateway")


@dataclass(frozen=True)
class Route:
    """``/v1/features/{name}/run``: literal segments and ``{param}`` segments."""

    method: str
    path: str
    handler: Handler
    parts: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(self.path.strip("/").split("/")))

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.parts):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.parts, segments, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def _not_found(status: int, message: str) -> Response:
    kind = "not_found" if status == 404 else "method_not_allowed"
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": kind}
    }
    return JSONResponse(body, status_code=status)


async def _no_route(request: Request) -> Response:
    method, path = request.method, request.url.path
    return _not_found(404, f"no such endpoint: {method} {path} (the API is under /v1)")


async def _method_not_allowed(request: Request) -> Response:
    return _not_found(405, f"{request.method} is not allowed on {request.url.path}")


class App:
    """Routes requests to handlers; runs ``startup``/``shutdown`` on the ASGI lifespan."""

    def __init__(
        self,
        routes: list[Route],
        startup: Callable[[], Awaitable[None]],
        shutdown: Callable[[], Awaitable[None]],
        wrap: Callable[[Handler], Handler] = lambda handler: handler,
    ) -> None:
        """``wrap`` decorates every handler, including the ones answering unknown routes (404)
        and known routes asked with another method (405)."""
        self.exact = {(r.method, r.path): wrap(r.handler) for r in routes if "{" not in r.path}
        self.patterns = [Route(r.method, r.path, wrap(r.handler)) for r in routes if "{" in r.path]
        self.exact_paths = {path for _, path in self.exact}
        self.not_found = wrap(_no_route)
        self.not_allowed = wrap(_method_not_allowed)
        self.startup = startup
        self.shutdown = shutdown
        self.state: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self._dispatch(scope, receive)
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive) -> Response:
        """``HEAD`` is answered by the ``GET`` route (the response is sent without its body)."""
        method, path = scope["method"], scope["path"]
        if method == "HEAD":
            method = "GET"
        handler = self.exact.get((method, path))
        if handler is not None:
            return await handler(Request(scope, receive))
        segments = path.strip("/").split("/")
        known = path in self.exact_paths  # a route with another method: 405, not 404
        for route in self.patterns:
            params = route.match(segments)
            if params is None:
                continue
            if route.method != method:
                known = True
                continue
            scope["path_params"] = params
            return await route.handler(Request(scope, receive))
        unrouted = self.not_allowed if known else self.not_found
        return await unrouted(Request(scope, receive))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    log.exception("gateway shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

"""The gateway's plain ASGI app: routes, 404 and 405, and what a handler is given."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from tether.gateway.asgi import App, Handler, Route


async def call(app: App, method: str, path: str) -> tuple[int, dict[str, Any]]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


async def test_unrouted_requests_get_404_or_405_and_no_invented_path_params() -> None:
    seen: list[dict[str, Any]] = []

    def wrap(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            seen.append(dict(request.path_params))
            return await handler(request)

        return wrapped

    async def run(request: Request) -> Response:
        return JSONResponse({"name": request.path_params["name"]})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def nothing() -> None:
        return None

    routes = [Route("POST", "/v1/features/{name}/run", run), Route("GET", "/healthz", health)]
    app = App(routes, startup=nothing, shutdown=nothing, wrap=wrap)
    assert await call(app, "POST", "/v1/features/chat/run") == (200, {"name": "chat"})
    status, body = await call(app, "GET", "/v1/features/chat/run")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    status, body = await call(app, "POST", "/healthz")
    assert status == 405 and "POST is not allowed on /healthz" in body["error"]["message"]
    status, body = await call(app, "GET", "/v1/nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"
    # a route's parameters, and nothing else: the 405/404 decision is no path parameter
    assert seen == [{"name": "chat"}, {}, {}, {}]

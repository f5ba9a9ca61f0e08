"""Cross-origin access for browser pages, only for the origins ``gateway.cors`` lists.

Without listed origins nothing changes: no ``Access-Control-*`` header is ever sent, so a
browser lets no other site's page read an answer, and preflight ``OPTIONS`` requests get 405.
With listed origins, their preflights are answered (204) and their responses carry
``Access-Control-Allow-Origin`` and expose tether's ``x-tether-*`` headers; a preflight from any
other origin gets a 403 that says where to list it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from tether.config.gateway import CorsConfig, normalize_origin
from tether.errors import PermissionDenied
from tether.gateway.asgi import Handler

METHODS = "GET, HEAD, POST, DELETE"
EXPOSED = "x-tether-trace-id, x-tether-overhead-ms, x-tether-degraded"
_HEADER_LIST = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")


class Cors:
    def __init__(self, config: CorsConfig) -> None:
        self.origins = frozenset(config.allow_origins)
        self.max_age_s = config.max_age_s

    def allowed(self, origin: str) -> bool:
        try:
            return normalize_origin(origin) in self.origins
        except ValueError:
            return False

    def wrap(self, handler: Handler, guard: Callable[[Handler], Handler]) -> Handler:
        """``guard(handler)`` with CORS around it (preflights are answered through ``guard``
        too); just ``guard(handler)`` when no origin is listed, at no cost."""
        inner = guard(handler)
        if not self.origins:
            return inner
        preflight = guard(self.preflight)

        async def wrapped(request: Request) -> Response:
            origin = request.headers.get("origin")
            asks = (
                request.method == "OPTIONS" and "access-control-request-method" in request.headers
            )
            response = await (preflight if asks else inner)(request)
            response.headers.append("vary", "origin")
            if origin is not None and self.allowed(origin) and not asks:
                response.headers["access-control-allow-origin"] = origin
                response.headers["access-control-expose-headers"] = EXPOSED
            return response

        return wrapped

    async def preflight(self, request: Request) -> Response:
        origin = request.headers.get("origin") or "null"
        if not self.allowed(origin):
            raise PermissionDenied(
                f"origin {origin[:100]!r} may not call this API from a browser; list it in "
                "gateway.cors.allow_origins",
                reason="cors_origin_refused",
            )
        headers = {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": METHODS,
            "access-control-max-age": str(self.max_age_s),
        }
        asked = request.headers.get("access-control-request-headers", "").strip()
        if asked and _HEADER_LIST.match(asked):
            headers["access-control-allow-headers"] = asked
        return Response(status_code=204, headers=headers)

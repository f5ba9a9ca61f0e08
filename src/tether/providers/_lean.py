"""``transport: lean``: tether's own HTTP/1.1 client (:mod:`tether.providers._transport`)
behind the transport seam. One keep-alive pool per origin, opened on first use inside the
running event loop; the proxy (from the environment) and the TLS context are settled once per
origin."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator

from tether.providers._transport import Pool, Response
from tether.providers.transport import (
    HttpRequest,
    HttpResponse,
    LoopBound,
    TransportOptions,
    env_proxy,
    tls_context,
)

#: Request URLs whose pool was looked up are remembered; past this many, forgotten.
_URL_CACHE = 64


class _Body:
    """A :class:`Response` body as the seam's byte stream."""

    __slots__ = ("_response",)

    def __init__(self, response: Response) -> None:
        self._response = response

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if chunk := await self._response.next_chunk():
            return chunk
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._response.release()


class _Pools:
    """This loop's pools, one per origin, and which pool each URL seen goes to."""

    def __init__(self) -> None:
        self.by_origin: dict[tuple[str, str], Pool] = {}
        self.by_url: dict[str, Pool] = {}

    def close(self) -> None:
        for pool in self.by_origin.values():
            pool.close()


class LeanTransport:
    """The lean transport: ``send`` POSTs through the pool of the request's origin."""

    def __init__(self, options: TransportOptions) -> None:
        self.options = options
        self._tls = options.tls
        self._pools: LoopBound[_Pools] = LoopBound()

    async def send(self, request: HttpRequest) -> HttpResponse:
        pools = self._pools.get(_Pools, _forget)
        pool = pools.by_url.get(request.url) or self._pool_for(pools, request.url)
        response = await pool.post(
            request.url,
            request.body,
            read_timeout=request.read_timeout,
            connect_timeout=request.connect_timeout,
            headers=request.headers,
            method=request.method,
        )
        return HttpResponse(response.status, response.headers, _Body(response))

    def _pool_for(self, pools: _Pools, url: str) -> Pool:
        parts = urllib.parse.urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        proxy = env_proxy(url)
        key = (origin, proxy or "")
        pool = pools.by_origin.get(key)
        if pool is None:
            pool = Pool(
                origin,
                limit=self.options.max_connections,
                connect_timeout_s=self.options.connect_timeout_s,
                keepalive_s=self.options.keepalive_s,
                tls=self._tls_for(origin, proxy),
                proxy=proxy,
                headers={},
            )
            pools.by_origin[key] = pool
        if len(pools.by_url) >= _URL_CACHE:
            pools.by_url.clear()
        pools.by_url[url] = pool
        return pool

    def _tls_for(self, origin: str, proxy: str | None) -> ssl.SSLContext | None:
        hops = (origin, proxy or "")
        if self._tls is None and any(urllib.parse.urlsplit(h).scheme == "https" for h in hops):
            self._tls = tls_context()  # ~25 ms of certificate loading, once per transport
        return self._tls

    async def aclose(self) -> None:
        await self._pools.aclose(_close)


def _forget(pools: _Pools) -> None:
    """Pools whose loop is closed are dropped: their sockets went with that loop."""


async def _close(pools: _Pools) -> None:
    pools.close()

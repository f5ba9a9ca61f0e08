"""``transport: default``: aiohttp behind the transport seam.

One ``ClientSession`` per event loop (opened on first use inside it), at most
``max_connections`` connections, idle ones closed after ``keepalive_s``; no cookies, no
redirects followed, gzip/deflate decoded. The proxy is read from the environment once per URL
(:func:`~tether.providers.transport.env_proxy`, the lean transport's rules) and handed to
aiohttp with its credentials as a ``Proxy-Authorization`` header: aiohttp's own ``trust_env``
would look the environment up in a thread on every request. aiohttp speaks TLS to an
``https://`` proxy, and TLS inside it to an ``https://`` origin (Python 3.11+).

Known limitations (``transport: lean`` has neither): when a connection breaks mid-body, aiohttp
raises at the next read and drops the bytes it had buffered but not yet handed out (whole
events already yielded are kept; ``test_transport_conformance.py`` marks this as an expected
failure); and on CPython before 3.11.8, an origin certificate refused inside a tunnel through
an ``https://`` proxy comes back as a broken connection (nothing is sent; asyncio logs a
TypeError, gh-113214) rather than a certificate error.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp

from tether.providers.transport import (
    BadURL,
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    Headers,
    HttpRequest,
    HttpResponse,
    LoopBound,
    ProtocolError,
    ReadTimeout,
    TransportError,
    TransportOptions,
    env_proxy,
    tls_context,
)

#: Body bytes aiohttp buffers per read; past twice this, it stops reading the socket.
READ_BUFSIZE = 1 << 16
#: Request URLs whose route was worked out are remembered; past this many, forgotten.
_URL_CACHE = 64


def _error(exc: BaseException) -> TransportError:
    """aiohttp's exception as the seam's :class:`TransportError`."""
    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(f"no connection within the connect timeout ({what})")
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return ReadTimeout(f"no answer from the server within the read timeout ({what})")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return ConnectFailed(f"proxy: {what}")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientHttpProxyError):
        return ConnectFailed(what)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError | ValueError):
        return BadURL(what)
    if isinstance(exc, aiohttp.ClientResponseError):
        return ProtocolError(f"the server's answer is not valid HTTP/1.1 ({what})")
    return ConnectionBroken(f"the connection broke before the answer ended ({what})")


class _Body:
    """An aiohttp response's body as the seam's byte stream."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._response.content.readany()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._response.close()
            raise _error(exc) from exc
        if chunk:
            return chunk
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # read to its end: the connection goes back to the pool
        else:
            self._response.close()


@dataclass(slots=True)
class _Route:
    """How requests to one URL go: through ``proxy`` (None: directly), with the proxy's
    credentials on the CONNECT (``proxy_headers``) or on the request (``headers``), and the TLS
    context (True: aiohttp's default, for plain http:// everywhere)."""

    proxy: str | None
    proxy_headers: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | bool = True


class AiohttpTransport:
    """The default transport."""

    def __init__(self, options: TransportOptions, *, read_bufsize: int = READ_BUFSIZE) -> None:
        self.options = options
        self.read_bufsize = read_bufsize
        self._tls = options.tls
        self._session: LoopBound[aiohttp.ClientSession] = LoopBound()
        self._routes: dict[str, _Route] = {}
        self._last_headers: tuple[tuple[Headers, _Route], dict[str, str]] | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.options.max_connections, keepalive_timeout=self.options.keepalive_s
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            read_bufsize=self.read_bufsize,
        )

    def _route(self, url: str) -> _Route:
        """How requests to ``url`` go: proxy, proxy credentials, TLS context."""
        route = self._routes.get(url)
        if route is None:
            if len(self._routes) >= _URL_CACHE:
                self._routes.clear()
            route = self._routes[url] = self._new_route(url)
        return route

    def _new_route(self, url: str) -> _Route:
        route = _Route(env_proxy(url))
        if route.proxy:
            parts = urllib.parse.urlsplit(route.proxy)
            if parts.username is not None:
                user = urllib.parse.unquote(parts.username)
                password = urllib.parse.unquote(parts.password or "")
                token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
                auth = {"proxy-authorization": f"Basic {token}"}
                route.proxy = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
                # a tunnel (https://) carries them on its CONNECT; a plain http:// request,
                # sent to the proxy whole, carries them itself
                if url.startswith("https:"):
                    route.proxy_headers = auth
                else:
                    route.headers = auth
        if any(urllib.parse.urlsplit(hop).scheme == "https" for hop in (url, route.proxy or "")):
            if self._tls is None:
                self._tls = tls_context()  # ~25 ms of certificate loading, once
            route.tls = self._tls
        return route

    def _headers_for(self, headers: Headers, route: _Route) -> dict[str, str]:
        """The request's headers as aiohttp takes them: built once per headers object and
        route (a provider passes the same immutable one on every call)."""
        key = (headers, route)
        if self._last_headers is None or self._last_headers[0] != key:
            self._last_headers = (key, {**headers, **route.headers})
        return self._last_headers[1]

    async def send(self, request: HttpRequest) -> HttpResponse:
        session = self._session.get(self._open, _drop)
        route = self._route(request.url)
        connect = self.options.connect_timeout_s
        if request.connect_timeout is not None:
            connect = min(connect, request.connect_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect, sock_read=request.read_timeout
        )
        try:
            response = await session.request(
                request.method,
                request.url,
                data=request.body,
                headers=self._headers_for(request.headers, route),
                allow_redirects=False,
                proxy=route.proxy,
                proxy_headers=route.proxy_headers,
                ssl=route.tls,
                timeout=timeout,
            )
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise _error(exc) from exc
        return HttpResponse(response.status, response.headers, _Body(response))

    async def aclose(self) -> None:
        await self._session.aclose(_close)


def _drop(session: aiohttp.ClientSession) -> None:
    """Forget a session whose loop is closed (nothing can be closed on that loop any more)."""
    session.detach()


async def _close(session: aiohttp.ClientSession) -> None:
    await session.close()

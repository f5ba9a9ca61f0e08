"""The transport seam: how a provider's HTTP request reaches the wire.

A transport has one method, ``send(request) -> response`` (httpx's
``AsyncBaseTransport.handle_async_request`` shape), plus ``aclose()``. The response's body is an
async iterator of bytes that must be closed (``aclose()``): read to its end, its connection goes
back to the pool; abandoned early, the connection is closed. Providers take a transport
(``OpenAIProvider(..., transport=...)``) and build no HTTP client themselves; the factory picks
one by ``providers.NAME.transport`` (:mod:`tether.providers.transports`):

* ``default``: aiohttp (:mod:`tether.providers._aiohttp`), a maintained general-purpose client;
* ``lean``: tether's own HTTP/1.1 client on httptools (:mod:`tether.providers._lean`), less CPU
  per call (``bench/http_client.py``).

Both raise the :class:`TransportError` tree below, which the provider layer turns into
tether's :class:`~tether.errors.ProviderError` tree. Request headers are :class:`Headers`,
checked when built: a CR, LF or NUL never reaches either transport. Both take proxies from
``HTTP(S)_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` (:func:`env_proxy`) and trusted certificates
from ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` / certifi (:func:`tls_context`).
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from tether.config.headers import header_problem

__all__ = [
    "BadHeader",
    "BadURL",
    "ByteStream",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionBroken",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "LoopBound",
    "ProtocolError",
    "ReadTimeout",
    "Transport",
    "TransportError",
    "TransportName",
    "TransportOptions",
    "WrongLoop",
    "env_proxy",
    "tls_context",
]

#: The names ``providers.NAME.transport`` accepts.
TransportName = Literal["default", "lean"]
#: What may not appear in a request URL: controls and spaces.
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f]")

T = TypeVar("T")


class TransportError(Exception):
    """A failure below HTTP: nothing usable came back."""


class ConnectTimeout(TransportError, TimeoutError):
    """No connection within the connect timeout."""


class ReadTimeout(TransportError, TimeoutError):
    """The server went silent for longer than the read timeout."""


class ConnectFailed(TransportError):
    """The connection was refused, or the host could not be resolved or reached."""


class ConnectionBroken(TransportError):
    """The connection closed or reset before the answer was complete."""


class BadURL(TransportError):
    """The URL cannot be called (no host, or a scheme other than http/https)."""


class ProtocolError(TransportError):
    """The server's bytes are not HTTP/1.1."""


class BadHeader(TransportError):
    """A request header cannot be sent as given: it would break (or inject into) the head."""


class WrongLoop(TransportError):
    """The transport's connections belong to another event loop that is still open."""


class Headers(Mapping[str, str]):
    """Request headers, names lowercased, checked once when built: a name that is not a token,
    or a CR, LF, NUL or other control character in a value, raises :class:`BadHeader` (naming
    the header, never quoting its value). Immutable, so a transport may render them once."""

    __slots__ = ("_items",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        for name, value in headers.items():
            if problem := header_problem(name, value):
                raise BadHeader(f"header {name!r} cannot be sent: {problem}")
        self._items = {name.lower(): value for name, value in headers.items()}

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({sorted(self._items)})"  # names only: values may be secrets


@dataclass(slots=True)
class HttpRequest:
    """One request: ``connect_timeout`` (if shorter) replaces the transport's for a new
    connection; ``read_timeout`` bounds every wait for the server (the headers, then each piece
    of the body). None means no limit. Not frozen (a frozen dataclass costs a microsecond or two
    per call); transports never change it."""

    method: str
    url: str
    headers: Headers
    body: bytes = b""
    connect_timeout: float | None = None
    read_timeout: float | None = None

    def __post_init__(self) -> None:
        if _URL_UNSAFE.search(self.url):
            raise BadURL(f"{self.url!r}: the URL contains a space or control character")
        if not self.method.isalpha() or not self.method.isascii():
            raise BadURL(f"{self.method!r} is not an HTTP method")


class ByteStream(Protocol):
    """A response body: async iteration gives its pieces (decoded from gzip/deflate);
    ``aclose()`` gives the connection back (read to its end) or closes it."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class HttpResponse:
    """An answer whose headers have arrived (names lowercased); the body is ``stream``."""

    status: int
    headers: Mapping[str, str]
    stream: ByteStream

    async def read(self) -> bytes:
        """The whole body (the stream is not closed: ``aclose()`` it)."""
        pieces = [piece async for piece in self.stream]
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def aclose(self) -> None:
        await self.stream.aclose()


class Transport(Protocol):
    """What a provider sends its requests through."""

    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` and return once the answer's headers arrived; raise a
        :class:`TransportError` if none can."""
        ...

    async def aclose(self) -> None:
        """Close every connection; safe to call twice."""
        ...


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """What both transports are built from: at most ``max_connections`` per origin, the
    connect timeout, how long an idle connection is kept (httpx's default: servers such as
    uvicorn close idle connections after 5 s, so keeping them longer only risks reusing a
    closing one), and the TLS context (None: the one :func:`tls_context` finds, loaded when
    first needed)."""

    max_connections: int = 100
    connect_timeout_s: float = 5.0
    keepalive_s: float = 5.0
    tls: ssl.SSLContext | None = None


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTP(S)_PROXY`` / ``ALL_PROXY`` set for ``url`` unless ``NO_PROXY`` exempts
    it: what httpx's ``trust_env`` did, read once per origin rather than on every request."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def tls_context() -> ssl.SSLContext:
    """Trusted certificates found as httpx found them: ``SSL_CERT_FILE``, ``SSL_CERT_DIR``, else
    certifi's bundle (the system store if certifi is not installed)."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class LoopBound(Generic[T]):
    """A resource (a pool, a session) that belongs to the event loop that opened it. Used from
    another loop, it is replaced when its loop is closed, and refused (:class:`WrongLoop`)
    while that loop is alive."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self, open_: Callable[[], T], drop: Callable[[T], None]) -> T:
        """This loop's resource, opened by ``open_`` on first use; ``drop`` forgets one whose
        loop is closed (its sockets went with that loop)."""
        loop = asyncio.get_running_loop()
        value = self._value
        if value is not None and self._loop is loop:
            return value
        if value is not None and self._loop is not None:
            if not self._loop.is_closed():
                raise WrongLoop(
                    "this provider's connection pool belongs to another event loop that is "
                    "still open. Build one provider per event loop, or await its aclose() on "
                    "the loop that used it before using it here."
                )
            drop(value)
        self._value, self._loop = open_(), loop
        return self._value

    async def aclose(self, close: Callable[[T], Coroutine[Any, Any, None]]) -> None:
        """Close the resource on its own loop (a no-op if never opened); safe to call twice."""
        value, loop = self._value, self._loop
        if value is None or loop is None:
            return
        if loop.is_closed():
            self._value = self._loop = None
        elif loop is asyncio.get_running_loop():
            self._value = self._loop = None
            await close(value)
        elif loop.is_running():  # e.g. the sync wrapper's loop, in its own thread
            self._value = self._loop = None
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(value), loop))
        else:
            raise WrongLoop(
                "its connection pool belongs to an event loop that is neither running nor "
                "closed; await aclose() on that loop."
            )

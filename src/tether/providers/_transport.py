"""A lean HTTP/1.1 client for provider calls: one keep-alive pool per provider.

Provider calls are always the same shape: POST a JSON body to one origin, then read a JSON body
or a stream of server-sent events. This module does exactly that on ``asyncio`` protocols with
the ``httptools`` response parser, about a quarter of a general-purpose client's CPU per call
(``bench/http_client.py``), which is most of what a gateway adds to a call. What it supports:

* keep-alive connections reused most-recent-first, at most ``limit`` per pool (callers beyond
  it wait for a connection), idle ones dropped after ``keepalive_s`` or once the server closed
  them;
* a connect timeout, and a read timeout that bounds every wait for the server (headers, then
  each piece of the body);
* TLS (``https://``) with a caller-supplied context;
* a proxy: absolute-form requests for ``http://``, a ``CONNECT host:port`` tunnel for
  ``https://``, ``user:password@`` in the proxy URL as Basic auth; an ``https://`` proxy is
  spoken to over TLS (verified with the same context), and a tunnel through it carries a second
  TLS session, to the origin;
* request heads that cannot be split: a header name that is not a token, or a CR, LF, NUL or
  other control character in a value, host or request target, is refused before anything is
  sent (:func:`header_problem`);
* ``Content-Length``, chunked and read-until-close bodies; ``gzip``/``deflate`` decoded;
* back-pressure on streamed bodies (reading pauses while too much is buffered).

Errors below HTTP are the transport seam's :class:`TransportError` subclasses
(:mod:`tether.providers.transport`); the provider layer turns them into tether's
:class:`~tether.errors.ProviderError` tree (``_http.transport_error``). Behind the seam this
client is ``transport: lean`` (:mod:`tether.providers._lean`).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import base64
import re
import ssl
import sys
import time
import urllib.parse
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import httptools

from tether._version import __version__
from tether.config.headers import header_problem as header_problem  # re-exported
from tether.providers.transport import (
    BadHeader,
    BadURL,
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    ProtocolError,
    ReadTimeout,
    TransportError,
)

#: Streamed body bytes buffered before the socket stops being read.
HIGH_WATER = 1 << 20
#: What may not appear in a host or request target: controls and spaces.
_TARGET_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


def _head_fields(fields: dict[str, str]) -> bytes:
    """``name: value`` lines for a request head, each checked by :func:`header_problem`."""
    for name, value in fields.items():
        if problem := header_problem(name, value):
            raise BadHeader(f"header {name!r} cannot be sent: {problem}")
    return "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode("latin-1")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port, plus the path prefix of the base URL."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadURL(f"{url!r} is not an http:// or https:// URL with a host")
        if _TARGET_UNSAFE.search(parts.hostname):
            raise BadURL(f"{url!r}: the host contains a space or control character")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise BadURL(f"{url!r}: {exc}") from None
        return cls(parts.scheme, parts.hostname, port)

    @property
    def authority(self) -> str:
        """``host[:port]`` as the ``Host`` header carries it (the default port left out)."""
        default = 443 if self.scheme == "https" else 80
        return self._host if self.port == default else self.host_port

    @property
    def host_port(self) -> str:
        """``host:port`` always: the authority-form a ``CONNECT`` request needs (RFC 9112)."""
        return f"{self._host}:{self.port}"

    @property
    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


class _Decoder:
    """``Content-Encoding`` gzip/deflate, decoded piece by piece."""

    def __init__(self, encoding: str) -> None:
        wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> bytes:
        try:
            return self._zlib.decompress(data)
        except zlib.error as exc:
            raise ProtocolError(f"the compressed body is corrupt ({exc})") from None

    def flush(self) -> bytes:
        return self._zlib.flush()


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, answering one request at a time (no pipelining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._error: TransportError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._tunnel: bytearray | None = None  # the proxy's CONNECT answer, while it comes
        self._reset_message()

    def _reset_message(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel += data
            if b"\r\n\r\n" in self._tunnel:
                self._wake()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols unasked"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"the server's answer is not valid HTTP/1.1 ({exc})"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and self._delimited_by_close():
            self.complete = True
        if not self.complete:
            why = f"{type(exc).__name__}: {exc}" if exc else "closed by the server"
            self._fail(ConnectionBroken(f"the connection broke before the answer ended ({why})"))
        self._wake()

    def _delimited_by_close(self) -> bool:
        """A body with neither a length nor chunks ends when the server closes."""
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        return "content-length" not in self.headers and not chunked

    # ---------------------------------------------------------------- parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            self._reset_message()
            return
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.keep_alive = self._parser.should_keep_alive()  # the parser forgets it next
            self.complete = True
            self._wake()

    # ---------------------------------------------------------------- waiting

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: TransportError) -> None:
        if self._error is None:
            self._error = error
        self.close()
        self._wake()

    def _timed_out(self, what: str, timeout: float) -> None:
        self._fail(ReadTimeout(f"no {what} from the server within {timeout:.3g} s"))

    async def wait(self, what: str, timeout: float | None) -> None:
        """Until the parser has made progress (or the connection failed)."""
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        if timeout is not None:
            self._timer = self._loop.call_later(timeout, self._timed_out, what, timeout)
        try:
            await self._waiter
        except asyncio.CancelledError:
            self.close()  # the answer is unread: this connection cannot be reused
            raise
        finally:
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._error is not None:
            raise self._error

    def take(self) -> bytes:
        """The body bytes received so far."""
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    # ---------------------------------------------------------------- lifecycle

    def send(self, head: bytes, body: bytes) -> None:
        """Write one request: in one piece when small (one send), else without copying the body."""
        self._reset_message()
        assert self.transport is not None
        if len(body) < 65536:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))

    @property
    def reusable(self) -> bool:
        return (
            not self.closed
            and self._error is None
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def finished(self) -> bool:
        """True when the answer was read to its end and the server keeps the connection."""
        return self.complete and self.keep_alive and self.reusable

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def tunnel(self, authority: str, auth: str | None, timeout: float) -> None:
        """Ask the proxy this connection reaches for a tunnel to ``authority`` (``CONNECT``)."""
        fields = {"host": authority}
        if auth:
            fields["proxy-authorization"] = auth
        head = b"CONNECT %s HTTP/1.1\r\n%s\r\n" % (
            authority.encode("latin-1"),
            _head_fields(fields),
        )
        self._tunnel = bytearray()
        assert self.transport is not None
        self.transport.write(head)
        closed = ConnectFailed(
            f"the proxy closed the connection instead of a tunnel to {authority}"
        )
        while b"\r\n\r\n" not in self._tunnel:
            if self.closed:
                raise closed
            try:
                await self.wait("answer to CONNECT", timeout)
            except ConnectionBroken:
                raise closed from None
        status = bytes(self._tunnel).split(b"\r\n", 1)[0].decode("latin-1")
        self._tunnel = None
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "200":
            raise ConnectFailed(f"the proxy refused a tunnel to {authority}: {status!r}")


class Response:
    """An answer whose headers have arrived; read the body with :meth:`read` or
    :meth:`next_chunk`, then :meth:`release` (always: it returns or closes the connection)."""

    def __init__(self, pool: Pool, conn: Connection, read_timeout: float | None) -> None:
        self._pool = pool
        self._conn = conn
        self._timeout = read_timeout
        self.status = conn.status
        self.headers = conn.headers
        encoding = conn.headers.get("content-encoding", "").strip().lower()
        self._decoder = _Decoder(encoding) if encoding in ("gzip", "x-gzip", "deflate") else None
        self._released = False

    async def next_chunk(self) -> bytes:
        """The next piece of the body; ``b""`` once it has all been read."""
        conn = self._conn
        while True:
            if conn.chunks:
                data = conn.take()
                if self._decoder is None:
                    return data
                if data := self._decoder.feed(data):
                    return data
                continue  # not enough compressed input for any output yet
            if conn.complete:
                return self._decoder.flush() if self._decoder else b""
            await conn.wait("body data", self._timeout)

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self.next_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back to the pool if the body was read to its end, else close
        it. Safe to call twice."""
        if self._released:
            return
        self._released = True
        self._pool.put(self._conn)


class Pool:
    """Keep-alive connections to one origin (``base_url``), at most ``limit`` open at once."""

    def __init__(
        self,
        base_url: str,
        *,
        limit: int,
        connect_timeout_s: float,
        keepalive_s: float,
        tls: ssl.SSLContext | None,
        proxy: str | None,
        headers: dict[str, str],
    ) -> None:
        self.origin = Origin.of(base_url)
        self.limit = limit
        self.connect_timeout_s = connect_timeout_s
        self.keepalive_s = keepalive_s
        self._proxy = _proxy_origin(proxy) if proxy else None
        proxy_https = self._proxy is not None and self._proxy.scheme == "https"
        if tls is None and (proxy_https or self.origin.scheme == "https"):
            raise BadURL("an https:// upstream or proxy needs a TLS context (tls=...)")
        self._tls = tls if self.origin.scheme == "https" else None
        self._proxy_tls = tls if proxy_https else None
        self._proxy_auth = _basic_auth(proxy) if proxy else None
        self._absolute_form = self._proxy is not None and self.origin.scheme == "http"
        self._idle: list[Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        fixed = {
            "host": self.origin.authority,
            "accept": "*/*",
            "user-agent": f"tether/{__version__}",
            **_lower(headers),
        }
        if self._absolute_form and self._proxy_auth:
            fixed["proxy-authorization"] = self._proxy_auth
        self._fixed = fixed
        self._head = _head_fields(fixed)
        self._extra: Mapping[str, str] | None = None  # the last per-request headers, rendered
        self._extra_head = self._head

    @property
    def connections(self) -> int:
        """Connections open now (in use and idle)."""
        return self._open

    async def post(
        self,
        url: str,
        body: bytes,
        *,
        read_timeout: float | None,
        connect_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> Response:
        """POST ``body`` to ``url`` (on this pool's origin) and wait for the answer's headers.
        ``connect_timeout`` (if shorter) replaces the pool's for a new connection; ``headers``
        are added to (and override) the pool's for this request."""
        target = url if self._absolute_form else _path(url)
        if _TARGET_UNSAFE.search(target):
            raise BadURL(f"{url!r}: the URL contains a space or control character")
        head = b"%s %s HTTP/1.1\r\n%scontent-length: %d\r\n\r\n" % (
            method.encode("ascii"),
            target.encode("latin-1"),
            self._head if headers is None else self._head_with(headers),
            len(body),
        )
        conn = await self._acquire(connect_timeout)
        try:
            conn.send(head, body)
            while not conn.headers_done:
                await conn.wait("answer", read_timeout)
        except BaseException:
            conn.close()
            self.put(conn)
            raise
        return Response(self, conn, read_timeout)

    def _head_with(self, headers: Mapping[str, str]) -> bytes:
        """The head fields with ``headers`` added: rendered once per headers object (a
        transport passes the same immutable one on every call)."""
        if headers is not self._extra:
            self._extra_head = _head_fields({**self._fixed, **_lower(headers)})
            self._extra = headers
        return self._extra_head

    async def _acquire(self, connect_timeout: float | None) -> Connection:
        if self._closed:
            raise ConnectionBroken("the connection pool was closed")
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable and now - conn.idle_since < self.keepalive_s:
                return conn
            self._discard(conn)
        while self._open >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # pass the slot on
                raise
            if self._idle:
                return await self._acquire(connect_timeout)
        self._open += 1
        try:
            return await self._connect(connect_timeout)
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _connect(self, connect_timeout: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        timeout = min(self.connect_timeout_s, connect_timeout or self.connect_timeout_s)
        hop = self._proxy or self.origin
        hop_tls = self._proxy_tls if self._proxy else self._tls
        tunnel = self._proxy is not None and self.origin.scheme == "https"
        try:
            async with asyncio.timeout(timeout):
                transport, conn = await loop.create_connection(
                    lambda: Connection(loop),
                    hop.host,
                    hop.port,
                    ssl=hop_tls,
                    server_hostname=hop.host if hop_tls else None,
                )
                conn.transport = transport  # uvloop may call connection_made later
                if tunnel:
                    try:
                        await self._tunnel(loop, conn)
                    except BaseException:
                        conn.close()
                        raise
        except TimeoutError:
            raise ConnectTimeout(
                f"no connection to {hop.host}:{hop.port} within {timeout:.3g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            where = f"proxy {hop.host_port}: " if self._proxy else ""
            raise ConnectFailed(f"{where}{type(exc).__name__}: {exc}") from exc
        return conn

    async def _tunnel(self, loop: asyncio.AbstractEventLoop, conn: Connection) -> None:
        """``CONNECT`` through the proxy, then TLS to the origin inside the tunnel (inside the
        proxy's own TLS session when the proxy is ``https://``)."""
        await conn.tunnel(self.origin.host_port, self._proxy_auth, self.connect_timeout_s)
        assert conn.transport is not None and self._tls is not None
        _close_tls_in_tls_on_error(conn.transport)
        try:
            transport = await loop.start_tls(
                conn.transport, conn, self._tls, server_hostname=self.origin.host
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(
                f"{self.origin.host_port} through the proxy: {type(exc).__name__}: {exc}"
            ) from exc
        conn.transport = cast(asyncio.Transport, transport)

    def put(self, conn: Connection) -> None:
        """Take a connection back after a request: kept if reusable, else closed."""
        if conn.finished() and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            self._discard(conn)
            return
        self._wake_one()

    def _discard(self, conn: Connection) -> None:
        conn.close()
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Close idle connections now, and the others as they come back."""
        self._closed = True
        while self._idle:
            self._discard(self._idle.pop())


def _close_tls_in_tls_on_error(outer: asyncio.Transport) -> None:
    """Before CPython 3.11.8 / 3.12.2 (gh-113214), a TLS session started inside an asyncio TLS
    transport (through an https:// proxy) that fails, e.g. on a certificate for another name,
    calls the outer transport's ``_force_close(exc)``, which raises TypeError instead of closing.
    Give that outer transport the fixed versions' behaviour: abort it (uvloop is not affected)."""
    fixed = sys.version_info >= (3, 12, 2) or (3, 11, 8) <= sys.version_info < (3, 12)
    if fixed or not isinstance(outer, asyncio.sslproto._SSLProtocolTransport):
        return

    def force_close(exc: BaseException | None) -> None:
        outer.abort()

    outer._force_close = force_close  # type: ignore[attr-defined]


def _proxy_origin(proxy: str) -> Origin:
    """The proxy's origin; an error about the URL shows it without its credentials."""
    try:
        return Origin.of(proxy)
    except BadURL:
        parts = urllib.parse.urlsplit(proxy)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise BadURL(
            f"the proxy {shown!r} is not an http:// or https:// URL with a host and a valid port"
        ) from None


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _basic_auth(proxy: str) -> str | None:
    parts = urllib.parse.urlsplit(proxy)
    if parts.username is None:
        return None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

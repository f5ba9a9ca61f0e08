"""HTTP plumbing the OpenAI and Anthropic providers share.

One keep-alive connection pool per provider (:mod:`tether.providers._transport`), opened on
first use inside the running event loop (providers are often built before a loop exists) and
closed by ``aclose()``. Every transport failure, bad status, wrong content type or malformed
body becomes a :class:`~tether.errors.ProviderError` that names the provider, the model and the
status code, and says what to do next. Server-sent events are parsed here too, from bytes split
anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import os
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.errors import ConfigError, ProviderError, RateLimited, Timeout, UpstreamError
from tether.providers._transport import (
    BadHeader,
    BadURL,
    ConnectFailed,
    ConnectTimeout,
    Pool,
    Response,
    TransportError,
    header_problem,
)
from tether.providers.base import CallContext

_SNIPPET = 200
#: The longest server-sent-event line (and event) accepted; longer ones are refused, not buffered.
MAX_EVENT_BYTES = 1 << 20
#: How long an idle pooled connection is kept (httpx's default; servers such as uvicorn close
#: idle connections after 5 s, so keeping them longer only risks reusing a closing one).
KEEPALIVE_S = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    """Who an error is about: the provider's name, the model and the URL called."""

    provider: str
    model: str
    url: str

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its ``event:`` field (``message`` by default) and its data."""

    event: str
    data: str


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000.0)
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_detail(data: Any) -> str | None:
    """The message of an OpenAI/Anthropic error object (``{"error": {"message": ...}}``)."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:_SNIPPET]
    if isinstance(error, str) and error:
        return error[:_SNIPPET]
    if data.get("message"):
        return str(data["message"])[:_SNIPPET]
    return None


def upstream_message(body: bytes) -> str:
    """The error message in an error body, else a short snippet of the body."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return error_detail(data) or text[:_SNIPPET] or "(empty body)"


def status_error(
    target: Target, status: int, headers: Mapping[str, str], body: bytes
) -> ProviderError:
    """The error for a non-2xx answer: 429 rate-limited, 408/5xx retryable, other 4xx not."""
    detail = upstream_message(body)
    p, m = target.provider, target.model
    if status == 429:
        retry_after = parse_retry_after(headers)
        wait = f"; Retry-After {retry_after:.3g}s" if retry_after is not None else ""
        return RateLimited(
            f"{target.name} rate-limited the call (HTTP 429{wait}): {detail}. Wait and retry, "
            "lower the request rate, or add a fallback model.",
            retry_after_s=retry_after,
            provider=p,
            model=m,
            status_code=status,
        )
    if status == 408 or status >= 500:
        return UpstreamError(
            f"{target.name} failed with HTTP {status}: {detail}. The upstream is unhealthy; "
            "retry later or add a fallback model.",
            provider=p,
            model=m,
            status_code=status,
            retryable=True,
        )
    if status in (401, 403):
        hint = f"Check the api_key of provider {target.provider!r} in tether.yaml"
    elif status == 404:
        hint = f"Check the model name and the provider's base_url (called {target.url})"
    elif 300 <= status < 400:
        where_to = headers.get("location", "elsewhere")
        hint = f"The upstream redirects to {where_to}; set base_url to the final address"
    else:
        hint = "Fix the request; retrying the same request will not help"
    return UpstreamError(
        f"{target.name} rejected the call with HTTP {status}: {detail}. {hint}.",
        provider=p,
        model=m,
        status_code=status,
        retryable=False,
    )


def transport_error(target: Target, exc: BaseException) -> ProviderError:
    """The error for a failure below HTTP: timeouts, refused or broken connections."""
    p, m = target.provider, target.model
    if isinstance(exc, ConnectTimeout):
        return Timeout(
            f"{target.name}: connecting to {target.url} timed out. Check that the host is "
            "reachable, or raise connect_timeout_s.",
            provider=p,
            model=m,
        )
    if isinstance(exc, TimeoutError):
        return Timeout(
            f"{target.name}: no answer from {target.url} in time ({type(exc).__name__}). The "
            "upstream is slow; raise timeout_s or add a fallback model.",
            provider=p,
            model=m,
        )
    if isinstance(exc, ConnectFailed):
        return UpstreamError(
            f"{target.name}: could not connect to {target.url} ({exc or 'connection refused'})."
            f" Check the base_url of provider {target.provider!r} and that the server is up.",
            provider=p,
            model=m,
            retryable=True,
        )
    if isinstance(exc, BadURL | BadHeader):
        return UpstreamError(
            f"{target.name}: cannot call {target.url} ({exc}). Check the base_url, headers "
            f"and api_key of provider {target.provider!r}, and the proxy settings.",
            provider=p,
            model=m,
            retryable=False,
        )
    return UpstreamError(
        f"{target.name}: the connection to {target.url} broke ({type(exc).__name__}: "
        f"{exc or 'connection reset'}). "
        "The upstream dropped the connection; retry or add a fallback model.",
        provider=p,
        model=m,
        retryable=True,
    )


def malformed(target: Target, what: str, *, status: int | None = 200) -> UpstreamError:
    """A well-framed answer whose content makes no sense (bad JSON, wrong shape, cut stream)."""
    return UpstreamError(
        f"{target.name}: {what}. The upstream (or a proxy in front of it) answered out of "
        "protocol; retry, and check base_url if it persists.",
        provider=target.provider,
        model=target.model,
        status_code=status,
        retryable=True,
    )


def check_content_type(
    target: Target, status: int, headers: Mapping[str, str], kind: Literal["json", "sse"]
) -> None:
    """Refuse a 2xx answer whose content type is not JSON / an event stream."""
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype:
        return
    ok = ctype == "text/event-stream" if kind == "sse" else ctype.endswith("json")
    if ok:
        return
    expected = "text/event-stream" if kind == "sse" else "application/json"
    raise UpstreamError(
        f"{target.name}: expected {expected} from {target.url} but got {ctype} (HTTP "
        f"{status}). base_url probably points at a web page or proxy, not the API; check "
        "base_url.",
        provider=target.provider,
        model=target.model,
        status_code=status,
        retryable=False,
    )


def parse_json_object(target: Target, body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``, or a clear :class:`UpstreamError`."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        snippet = body[:80].decode("utf-8", "replace")
        raise malformed(
            target, f"the response body is not valid JSON ({exc}; starts {snippet!r})"
        ) from None
    if not isinstance(data, dict):
        raise malformed(target, f"expected a JSON object, got {type(data).__name__}")
    return data


def parse_json_event(target: Target, data: str) -> dict[str, Any]:
    """The JSON object carried by one stream event, or a clear :class:`UpstreamError`."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise malformed(target, f"malformed stream chunk {data[:80]!r} ({exc})") from None
    if not isinstance(obj, dict):
        raise malformed(target, f"stream chunk is not a JSON object: {data[:80]!r}")
    return obj


@dataclass(slots=True)
class SSEDecoder:
    """Server-sent events from bytes split at arbitrary boundaries.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (a ``\\r\\n`` split across two chunks is one
    line end). A line or an event longer than ``max_bytes`` raises instead of growing without
    bound. An event cut off by the end of the stream is never emitted.
    """

    target: Target
    max_bytes: int = MAX_EVENT_BYTES
    _partial: list[bytes] = field(default_factory=list, init=False)
    _partial_size: int = field(default=0, init=False)
    _skip_lf: bool = field(default=False, init=False)
    _event: str = field(default="", init=False)
    _data: list[str] = field(default_factory=list, init=False)
    _data_size: int = field(default=0, init=False)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by ``chunk``."""
        events: list[SSEEvent] = []
        for line in self._lines(chunk):
            self._line(line.decode("utf-8", "replace"), events)
        return events

    def _lines(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            chunk = chunk[1:] if chunk[:1] == b"\n" else chunk
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if lines and self._partial:
            lines[0] = b"".join([*self._partial, lines[0]])
            self._partial.clear()
            self._partial_size = 0
        if rest:
            self._partial.append(rest)
            self._partial_size += len(rest)
        if self._partial_size > self.max_bytes or any(len(ln) > self.max_bytes for ln in lines):
            raise self._too_big("line")
        return lines

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(self._event or "message", "\n".join(self._data)))
            self._event, self._data, self._data_size = "", [], 0
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self.max_bytes:
                raise self._too_big("event")

    def _too_big(self, what: str) -> UpstreamError:
        return malformed(
            self.target, f"a stream {what} is longer than {self.max_bytes} bytes; refused"
        )


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTP(S)_PROXY`` / ``ALL_PROXY`` set for ``url`` unless ``NO_PROXY`` exempts
    it: what httpx's ``trust_env`` did, read once per session rather than on every request."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def check_headers(provider: str, headers: Mapping[str, str]) -> None:
    """Refuse a header that would break the request head (a CR, LF or NUL in an API key or a
    configured value, a name that is not a token), naming the header but never its value."""
    for name, value in headers.items():
        if problem := header_problem(name, value):
            raise ConfigError(
                f"provider {provider!r}: header {name!r} cannot be sent: {problem}. Fix the "
                "provider's api_key and headers in tether.yaml (a secret read from a file or "
                "variable often ends with a newline)."
            )


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


def _dump_json(value: Any) -> bytes:
    """Request bodies as compact UTF-8 JSON (NaN refused), byte for byte what httpx sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def _read_body(target: Target, response: Response) -> bytes:
    try:
        return await response.read()
    except TransportError as exc:
        raise transport_error(target, exc) from exc


async def _read_chunk(target: Target, response: Response) -> bytes:
    """The next bytes of a streamed body (``b""`` at its end)."""
    try:
        return await response.next_chunk()
    except TransportError as exc:
        raise transport_error(target, exc) from exc


class HTTPClient:
    """A provider's pooled HTTP client: POST JSON, or POST and read server-sent events.

    The pool belongs to the event loop that first used it. Used from another loop, it is
    replaced when its loop is closed, and refused (with what to do) while that loop is alive.
    """

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        connect_timeout_s: float,
        max_connections: int,
        max_event_bytes: int = MAX_EVENT_BYTES,
        provider: str = "",
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.max_event_bytes = max_event_bytes
        check_headers(provider, headers)
        self._headers = dict(headers)
        if not any(name.lower() == "content-type" for name in headers):
            self._headers["content-type"] = "application/json"  # every request POSTs JSON
        self._pool: Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls: ssl.SSLContext | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    async def _client(self, target: Target) -> Pool:
        """This loop's pool, opened on first use."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is not None and self._loop is loop:
            return pool
        if pool is not None and self._loop is not None and not self._loop.is_closed():
            raise self._wrong_loop(target)
        # a pool whose loop is gone is dropped: its sockets went with that loop
        proxy = env_proxy(self.base_url)
        hops = (self.base_url, proxy or "")
        if self._tls is None and any(urllib.parse.urlsplit(h).scheme == "https" for h in hops):
            self._tls = tls_context()  # ~25 ms of certificate loading, once per client
        try:
            self._pool = Pool(
                self.base_url,
                limit=self.max_connections,
                connect_timeout_s=self.connect_timeout_s,
                keepalive_s=KEEPALIVE_S,
                tls=self._tls,
                proxy=proxy,
                headers=self._headers,
            )
        except TransportError as exc:
            raise transport_error(target, exc) from exc
        self._loop = loop
        return self._pool

    def _wrong_loop(self, target: Target) -> ProviderError:
        return ProviderError(
            f"{target.name}: this provider's connection pool belongs to another event loop "
            "that is still open. Build one provider per event loop, or await its aclose() on "
            "the loop that used it before using it here.",
            provider=target.provider,
            model=target.model,
            retryable=False,
        )

    async def _post(self, target: Target, body: dict[str, Any], ctx: CallContext) -> Response:
        pool = await self._client(target)
        remaining = ctx.remaining()
        read_timeout = None if remaining is None else max(remaining, 0.001)
        try:
            data = _dump_json(body)
            return await pool.post(
                target.url, data, read_timeout=read_timeout, connect_timeout=read_timeout
            )
        except TransportError as exc:
            raise transport_error(target, exc) from exc

    async def post_json(
        self, target: Target, body: dict[str, Any], ctx: CallContext
    ) -> dict[str, Any]:
        """POST ``body`` and return the JSON object answered, or raise a ProviderError."""
        response = await self._post(target, body, ctx)
        try:
            content = await _read_body(target, response)
        finally:
            response.release()
        status = response.status
        if not 200 <= status < 300:
            raise status_error(target, status, response.headers, content)
        check_content_type(target, status, response.headers, "json")
        return parse_json_object(target, content)

    async def events(
        self, target: Target, body: dict[str, Any], ctx: CallContext
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST ``body`` and yield the server-sent events answered, or raise a ProviderError.

        Close it (``contextlib.aclosing``): a stream read to its end returns its connection to
        the pool; one abandoned early closes it.
        """
        response = await self._post(target, body, ctx)
        try:
            status = response.status
            if not 200 <= status < 300:
                content = await _read_body(target, response)
                raise status_error(target, status, response.headers, content)
            check_content_type(target, status, response.headers, "sse")
            decoder = SSEDecoder(target, self.max_event_bytes)
            while chunk := await _read_chunk(target, response):
                for event in decoder.feed(chunk):
                    yield event
        finally:
            response.release()

    async def aclose(self) -> None:
        """Close the connection pool (a no-op if it was never opened); safe to call twice."""
        pool, loop = self._pool, self._loop
        if pool is None or loop is None:
            return
        if loop is asyncio.get_running_loop() or loop.is_closed():
            self._pool = self._loop = None
            if not loop.is_closed():
                pool.close()
        elif loop.is_running():  # e.g. the sync wrapper's loop, in its own thread
            self._pool = self._loop = None
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_close(pool), loop))
        else:
            raise ProviderError(
                f"provider {self.provider!r}: its connection pool belongs to an event loop that "
                "is neither running nor closed; await aclose() on that loop.",
                provider=self.provider,
                retryable=False,
            )


async def _close(pool: Pool) -> None:
    pool.close()

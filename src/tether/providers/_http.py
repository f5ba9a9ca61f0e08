"""HTTP plumbing the OpenAI and Anthropic providers share.

A provider's requests go through a transport (:mod:`tether.providers.transport`: aiohttp by
default, tether's lean client with ``transport: lean``). Every transport failure, bad status,
wrong content type or malformed body becomes a :class:`~tether.errors.ProviderError` that names
the provider, the model and the status code, and says what to do next. Server-sent events are
parsed here too, from bytes split anywhere.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tether._version import __version__
from tether.config.headers import header_problem
from tether.errors import ConfigError, ProviderError, RateLimited, Timeout, UpstreamError
from tether.providers.base import CallContext
from tether.providers.transport import (
    BadHeader,
    BadURL,
    ConnectFailed,
    ConnectTimeout,
    Headers,
    HttpRequest,
    HttpResponse,
    Transport,
    TransportError,
    WrongLoop,
)
from tether.providers.transport import env_proxy as env_proxy  # where it used to be
from tether.providers.transport import tls_context as tls_context

_SNIPPET = 200
#: The longest server-sent-event line (and event) accepted; longer ones are refused, not buffered.
MAX_EVENT_BYTES = 1 << 20


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
    if isinstance(exc, WrongLoop):
        return ProviderError(f"{target.name}: {exc}", provider=p, model=m, retryable=False)
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


def _dump_json(value: Any) -> bytes:
    """Request bodies as compact UTF-8 JSON (NaN refused), byte for byte what httpx sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def _read_body(target: Target, response: HttpResponse) -> bytes:
    try:
        return await response.read()
    except TransportError as exc:
        raise transport_error(target, exc) from exc


class HTTPClient:
    """A provider's HTTP client: POST JSON, or POST and read server-sent events, through the
    transport it is given (``transport=``); it builds none itself."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        transport: Transport,
        max_event_bytes: int = MAX_EVENT_BYTES,
        provider: str = "",
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.transport = transport
        self.max_event_bytes = max_event_bytes
        check_headers(provider, headers)
        fields = {name.lower(): value for name, value in headers.items()}
        fields.setdefault("content-type", "application/json")  # every request POSTs JSON
        fields.setdefault("user-agent", f"tether/{__version__}")
        self._headers = Headers(fields)

    def url(self, path: str) -> str:
        return self.base_url + path

    async def _post(self, target: Target, body: dict[str, Any], ctx: CallContext) -> HttpResponse:
        remaining = ctx.remaining()
        timeout = None if remaining is None else max(remaining, 0.001)
        try:
            request = HttpRequest(
                "POST",
                target.url,
                self._headers,
                _dump_json(body),
                connect_timeout=timeout,
                read_timeout=timeout,
            )
            return await self.transport.send(request)
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
            await response.aclose()
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
            try:
                async for chunk in response.stream:
                    for event in decoder.feed(chunk):
                        yield event
            except TransportError as exc:
                raise transport_error(target, exc) from exc
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the transport's connections (a no-op if none were opened); safe to call
        twice."""
        try:
            await self.transport.aclose()
        except WrongLoop as exc:
            raise ProviderError(
                f"provider {self.provider!r}: {exc}", provider=self.provider, retryable=False
            ) from None

"""HTTP plumbing the OpenAI and Anthropic providers share.

One pooled ``httpx.AsyncClient`` per provider; every transport failure, bad status, wrong content
type or malformed body becomes a :class:`~tether.errors.ProviderError` that names the provider,
the model and the status code, and says what to do next. Server-sent events are parsed here too.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from tether.errors import ProviderError, RateLimited, Timeout, UpstreamError
from tether.providers.base import CallContext

_SNIPPET = 200


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


def transport_error(target: Target, exc: httpx.HTTPError) -> ProviderError:
    """The error for a failure below HTTP: timeouts, refused or broken connections."""
    p, m = target.provider, target.model
    if isinstance(exc, httpx.ConnectTimeout):
        return Timeout(
            f"{target.name}: connecting to {target.url} timed out. Check that the host is "
            "reachable, or raise connect_timeout_s.",
            provider=p,
            model=m,
        )
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(
            f"{target.name}: no answer from {target.url} in time ({type(exc).__name__}). The "
            "upstream is slow; raise timeout_s or add a fallback model.",
            provider=p,
            model=m,
        )
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError(
            f"{target.name}: could not connect to {target.url} ({exc or 'connection refused'})."
            f" Check the base_url of provider {target.provider!r} and that the server is up.",
            provider=p,
            model=m,
            retryable=True,
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
    target: Target, response: httpx.Response, kind: Literal["json", "sse"]
) -> None:
    """Refuse a 2xx answer whose content type is not JSON / an event stream."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype:
        return
    ok = ctype == "text/event-stream" if kind == "sse" else ctype.endswith("json")
    if ok:
        return
    expected = "text/event-stream" if kind == "sse" else "application/json"
    raise UpstreamError(
        f"{target.name}: expected {expected} from {target.url} but got {ctype} (HTTP "
        f"{response.status_code}). base_url probably points at a web page or proxy, not the "
        "API; check base_url.",
        provider=target.provider,
        model=target.model,
        status_code=response.status_code,
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


@contextlib.contextmanager
def mapped_transport_errors(target: Target) -> Iterator[None]:
    """Turn httpx transport exceptions raised inside the block into tether errors."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise transport_error(target, exc) from exc


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Server-sent events from decoded lines; an event cut off by end of stream is dropped."""
    event = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SSEEvent(event or "message", "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)


class HTTPClient:
    """A provider's pooled HTTP client: POST JSON, or POST and read server-sent events."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        connect_timeout_s: float,
        max_connections: int,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self._client = httpx.AsyncClient(
            headers=dict(headers),
            timeout=httpx.Timeout(None, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
            ),
        )

    def url(self, path: str) -> str:
        return self.base_url + path

    def _timeout(self, ctx: CallContext) -> httpx.Timeout:
        """The call's remaining time as a read timeout (connect stays the configured one)."""
        remaining = ctx.remaining()
        if remaining is None:
            return httpx.Timeout(None, connect=self.connect_timeout_s)
        remaining = max(remaining, 0.001)
        return httpx.Timeout(remaining, connect=min(self.connect_timeout_s, remaining))

    async def post_json(
        self, target: Target, body: dict[str, Any], ctx: CallContext
    ) -> dict[str, Any]:
        """POST ``body`` and return the JSON object answered, or raise a ProviderError."""
        with mapped_transport_errors(target):
            response = await self._client.post(target.url, json=body, timeout=self._timeout(ctx))
        if not 200 <= response.status_code < 300:
            raise status_error(target, response.status_code, response.headers, response.content)
        check_content_type(target, response, "json")
        return parse_json_object(target, response.content)

    async def events(
        self, target: Target, body: dict[str, Any], ctx: CallContext
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST ``body`` and yield the server-sent events answered, or raise a ProviderError.

        Close it (``contextlib.aclosing``) so the connection goes back to the pool.
        """
        with mapped_transport_errors(target):
            request = self._client.build_request(
                "POST", target.url, json=body, timeout=self._timeout(ctx)
            )
            response = await self._client.send(request, stream=True)
            try:
                if not 200 <= response.status_code < 300:
                    await response.aread()
                    raise status_error(
                        target, response.status_code, response.headers, response.content
                    )
                check_content_type(target, response, "sse")
                async for event in iter_sse(response.aiter_lines()):
                    yield event
            finally:
                await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

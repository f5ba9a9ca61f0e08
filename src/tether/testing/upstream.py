"""A fault-injecting upstream HTTP server on loopback, for tether's tests and yours.

It speaks OpenAI chat completions (``POST /v1/chat/completions``), OpenAI embeddings
(``POST /v1/embeddings``: a vector per input from a hash of its text) and Anthropic messages
(``POST /v1/messages``), in one piece or streamed, and answers with :attr:`FaultyUpstream.text`
unless a :class:`Fault` says otherwise::

    with FaultyUpstream(text="Hello!") as up:
        up.script([Fault.SERVER_503, Fault.OK])     # the next two requests, in order
        up.set_fault(Fault.RATE_LIMITED)            # every request after those
        provider = OpenAIProvider(OpenAIProviderConfig(kind="openai", base_url=up.base_url), ...)
        assert up.requests == 2

It is plain HTTP/1.1 with keep-alive on ``asyncio.start_server``, run by its own event loop in a
background thread, so synchronous and asynchronous tests can use it alike. Faults a running
server cannot produce have helpers: :func:`refused_base_url` (nothing listens) and
:class:`Blackhole` (connects hang until the client's connect timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from tether.testing._wire import (
    Answer,
    AnthropicWire,
    EmbeddingsWire,
    OpenAIWire,
    Wire,
    count_words,
    split_text,
)

LOOPBACK = "127.0.0.1"
HTML_PAGE = b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
MALFORMED_BODY = b'{"id": "broken", "choices": [{"index": 0, "message": {"content": "Hel'
MALFORMED_EVENT = b"data: {not json\n\n"
_REASONS = {529: "Overloaded"}


class Fault(enum.Enum):
    """What the server does with a request. Each fault has a meaning in both modes."""

    OK = "ok"  #: answer normally
    SERVER_500 = "500"  #: HTTP 500 with a JSON error body
    SERVER_502 = "502"  #: HTTP 502
    SERVER_503 = "503"  #: HTTP 503
    OVERLOADED = "529"  #: HTTP 529 (Anthropic's "overloaded")
    BAD_REQUEST = "400"  #: HTTP 400 (not retryable)
    UNAUTHORIZED = "401"  #: HTTP 401 (not retryable)
    RATE_LIMITED = "429"  #: HTTP 429 with ``Retry-After: retry_after``
    RESET = "reset"  #: read the request, then reset the connection without answering
    READ_TIMEOUT = "read_timeout"  #: read the request, never answer
    SLOW_FIRST_TOKEN = "slow_first_token"  #: headers, ``first_token_delay_s``, then the answer
    STREAM_CUT = "stream_cut"  #: half the answer, then close the connection (no end, no [DONE])
    TRUNCATED = "truncated"  #: streams end cleanly after half the text; bodies lack the answer
    MALFORMED_JSON = "malformed_json"  #: 200 with a truncated JSON body (streams: as below)
    MALFORMED_SSE = "malformed_sse"  #: a ``data: {not json`` event before any text
    WRONG_CONTENT_TYPE = "wrong_content_type"  #: 200 with an HTML page
    ERROR_EVENT = "error_event"  #: 200, then an error event after the first text (a body: error)


STATUS_FAULTS = {
    Fault.SERVER_500: 500,
    Fault.SERVER_502: 502,
    Fault.SERVER_503: 503,
    Fault.OVERLOADED: 529,
    Fault.BAD_REQUEST: 400,
    Fault.UNAUTHORIZED: 401,
    Fault.RATE_LIMITED: 429,
}


@dataclass(frozen=True, slots=True)
class Received:
    """One request the server read."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


# ---------------------------------------------------------------- HTTP/1.1 framing


@dataclass(slots=True)
class _Exchange:
    """One request being answered on one connection."""

    request: Received
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    dialect: Wire
    stream: bool
    answer: Answer
    keep_alive: bool

    async def send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        extra: Iterable[tuple[str, str]] = (),
        *,
        declared_length: int | None = None,
    ) -> None:
        """A complete response (``declared_length`` lets a fault promise more than it sends)."""
        length = len(body) if declared_length is None else declared_length
        head = [("content-type", content_type), ("content-length", str(length)), *extra]
        self.writer.write(self._head(status, head) + body)
        await self.writer.drain()

    async def send_json(
        self, status: int, data: Any, extra: Iterable[tuple[str, str]] = ()
    ) -> None:
        await self.send(status, json.dumps(data).encode(), extra=extra)

    async def start_stream(self) -> None:
        head = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"),
        ]
        self.writer.write(self._head(200, head))
        await self.writer.drain()

    async def chunk(self, data: bytes) -> None:
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def end_stream(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    def _head(self, status: int, headers: list[tuple[str, str]]) -> bytes:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = _REASONS.get(status, "Unknown")
        headers = [*headers, ("connection", "keep-alive" if self.keep_alive else "close")]
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    """The next request on a connection, or None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        length = int(headers.get("content-length") or 0)
        body = await reader.readexactly(length) if length else b""
    return Received(method, path, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), not an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ---------------------------------------------------------------- the server


class FaultyUpstream:
    """A loopback HTTP server that answers like OpenAI or Anthropic, or fails on purpose.

    Settings (change them at any time): ``text`` (the answer), ``chunks`` (stream pieces; 0 =
    one per word), ``tool_calls`` (``[(name, arguments_dict)]`` to answer with), ``usage``
    (``(input_tokens, output_tokens)``; default: words counted), ``retry_after`` (seconds or an
    HTTP date, for 429), ``first_token_delay_s``, ``chunk_delay_s`` and ``latency_ms`` (a delay
    before every answer, for benchmarks; fixed, or spread uniformly over ``latency_ms * (1 +-
    latency_jitter)`` by a seeded generator). OpenAI answers also carry ``response_model``
    (the model the answer names; default: the request's), ``refusal``, ``system_fingerprint``,
    ``cached_tokens`` and ``reasoning_tokens`` (parts of the usage's input and output tokens),
    and a logprob per piece when the request asks ``logprobs: true``. ``respond`` (a function
    of the request's JSON body) makes the answer depend on the request: it returns the text to
    answer with instead of ``text``.

    ``rpm`` makes it rate-limit like a real upstream: a token bucket of ``rpm`` requests that
    refills at ``rpm / 60`` a second; a request that finds it empty (and no scripted fault)
    gets a 429 (``Fault.RATE_LIMITED``), counted in :attr:`rate_limited`.
    """

    def __init__(
        self,
        *,
        text: str = "Hello from the faulty upstream.",
        chunks: int = 0,
        tool_calls: list[tuple[str, dict[str, Any]]] | None = None,
        usage: tuple[int, int] | None = None,
        retry_after: float | str | None = 1,
        first_token_delay_s: float = 1.0,
        chunk_delay_s: float = 0.0,
        latency_ms: float = 0.0,
        latency_jitter: float = 0.0,
        history: int = 256,
        response_model: str | None = None,
        refusal: str | None = None,
        system_fingerprint: str | None = None,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        rpm: float | None = None,
        respond: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.text = text
        self.respond = respond
        self.chunks = chunks
        self.tool_calls = list(tool_calls or [])
        self.usage = usage
        self.retry_after = retry_after
        self.first_token_delay_s = first_token_delay_s
        self.chunk_delay_s = chunk_delay_s
        self.latency_ms = latency_ms
        self.latency_jitter = latency_jitter
        self._latency_rng = random.Random(0)
        self.response_model = response_model
        self.refusal = refusal
        self.system_fingerprint = system_fingerprint
        self.cached_tokens = cached_tokens
        self.reasoning_tokens = reasoning_tokens
        self.rpm = rpm
        self._rpm_tokens = rpm or 0.0
        self._rpm_at = time.monotonic()
        self._rate_limited = 0
        self.received: deque[Received] = deque(maxlen=history)
        self._fault = Fault.OK
        self._script: deque[Fault] = deque()
        self._requests = 0
        self._accepted = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._port = 0

    # -- lifecycle

    def __enter__(self) -> FaultyUpstream:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> FaultyUpstream:
        """Start serving on a free loopback port (in a background thread)."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        errors: list[OSError] = []
        thread = threading.Thread(
            target=self._run, args=(loop, ready, errors), name="FaultyUpstream", daemon=True
        )
        thread.start()
        ready.wait(timeout=10)
        if errors or not ready.is_set():
            thread.join(timeout=10)
            raise errors[0] if errors else RuntimeError("FaultyUpstream did not start in 10 s")
        self._loop, self._thread = loop, thread
        return self

    def _run(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, errors: list[OSError]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, LOOPBACK, 0)
                )
                self._port = self._server.sockets[0].getsockname()[1]
            except OSError as exc:
                errors.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def close(self) -> None:
        """Stop serving, drop every connection and join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task, writer in list(self._connections.items()):
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)

    # -- addresses

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (Anthropic-style base URL)."""
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (OpenAI-style base URL; Anthropic's provider takes it)."""
        return f"{self.url}/v1"

    # -- faults and counters

    def set_fault(self, fault: Fault) -> None:
        """The fault for every request not covered by :meth:`script`."""
        with self._lock:
            self._fault = fault

    def script(self, faults: Iterable[Fault]) -> None:
        """Queue faults for the next requests, one each, in order (then :meth:`set_fault`'s)."""
        with self._lock:
            self._script.extend(faults)

    def reset(self) -> None:
        """Back to answering OK, with no script, no history and a zero request count."""
        with self._lock:
            self._fault = Fault.OK
            self._script.clear()
            self._requests = self._accepted = self._rate_limited = 0
            self.received.clear()
            self._rpm_tokens, self._rpm_at = self.rpm or 0.0, time.monotonic()

    @property
    def requests(self) -> int:
        """How many requests the server has read."""
        with self._lock:
            return self._requests

    @property
    def rate_limited(self) -> int:
        """How many requests were refused because they came faster than ``rpm``."""
        with self._lock:
            return self._rate_limited

    @property
    def connections(self) -> int:
        """How many TCP connections the server has accepted (keep-alive reuses them)."""
        with self._lock:
            return self._accepted

    @property
    def last_request(self) -> Received | None:
        with self._lock:
            return self.received[-1] if self.received else None

    def _take(self, request: Received) -> Fault:
        with self._lock:
            self._requests += 1
            self.received.append(request)
            fault = self._script.popleft() if self._script else self._fault
            if fault is Fault.OK and self.rpm is not None and not self._rpm_admits():
                self._rate_limited += 1
                return Fault.RATE_LIMITED
            return fault

    def _rpm_admits(self) -> bool:
        """Take one request from the ``rpm`` bucket (under the lock), if there is one."""
        assert self.rpm is not None
        now = time.monotonic()
        refill = (now - self._rpm_at) * self.rpm / 60.0
        self._rpm_tokens, self._rpm_at = min(float(self.rpm), self._rpm_tokens + refill), now
        if self._rpm_tokens < 1.0:
            return False
        self._rpm_tokens -= 1.0
        return True

    # -- serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        with self._lock:
            self._accepted += 1
        try:
            while await self._one(reader, writer):
                pass
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            writer.transport.abort()
        except asyncio.CancelledError:
            # shutting down: end the handler quietly (asyncio's stream callback would otherwise
            # log the cancellation as an unhandled exception)
            writer.transport.abort()
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True to keep the connection for the next."""
        request = await _read_request(reader)
        if request is None:
            return False
        fault = self._take(request)
        if self.latency_ms:
            spread = self._latency_rng.uniform(-self.latency_jitter, self.latency_jitter)
            await asyncio.sleep(self.latency_ms * (1.0 + spread) / 1000.0)
        keep_alive = request.headers.get("connection", "").lower() != "close"
        path = request.path.split("?")[0].rstrip("/")
        dialect: Wire | None = None
        if path.endswith("/chat/completions"):
            dialect = OpenAIWire
        elif path.endswith("/embeddings"):
            dialect = EmbeddingsWire
        elif path.endswith("/messages"):
            dialect = AnthropicWire
        try:
            body = request.json()
        except ValueError:
            body = None
        exchange = _Exchange(
            request,
            reader,
            writer,
            dialect or OpenAIWire,
            bool(isinstance(body, dict) and body.get("stream")),
            self._answer_for(body),
            keep_alive,
        )
        if dialect is None:
            await self._not_routed(exchange, path)
            return keep_alive
        if request.method != "POST" or not isinstance(body, dict):
            await exchange.send_json(400, exchange.dialect.error(400))
            return keep_alive
        handler = self._handlers().get(fault, FaultyUpstream._status)
        return await handler(self, exchange, fault) and keep_alive

    async def _not_routed(self, exchange: _Exchange, path: str) -> None:
        if exchange.request.method == "GET" and path.endswith("/models"):
            model = {"id": "faulty-model", "object": "model", "created": 0, "owned_by": "tether"}
            await exchange.send_json(200, {"object": "list", "data": [model]})
        else:
            error = {"error": {"message": f"no route for {path}", "type": "not_found"}}
            await exchange.send_json(404, error)

    def _answer_for(self, body: Any) -> Answer:
        text = self.text
        if self.respond is not None and isinstance(body, dict):
            text = self.respond(body)
        pieces = split_text(text, self.chunks)
        calls = [(name, json.dumps(args)) for name, args in self.tool_calls]
        words = len(text.split()) + sum(len(a) // 4 for _, a in calls)
        usage = self.usage or (count_words(body), words)
        get = body.get if isinstance(body, dict) else {}.get
        options = get("stream_options") or {}
        return Answer(
            model=self.response_model or str(get("model") or "faulty-model"),
            pieces=pieces,
            tool_calls=calls,
            input_tokens=usage[0],
            output_tokens=usage[1],
            include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
            body=body,
            refusal=self.refusal,
            system_fingerprint=self.system_fingerprint,
            logprobs=get("logprobs") is True,
            cached_tokens=self.cached_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    # -- one handler per fault

    @staticmethod
    def _handlers() -> dict[Fault, Callable[[FaultyUpstream, _Exchange, Fault], Awaitable[bool]]]:
        return {
            Fault.OK: FaultyUpstream._ok,
            Fault.RESET: FaultyUpstream._drop,
            Fault.READ_TIMEOUT: FaultyUpstream._hang,
            Fault.SLOW_FIRST_TOKEN: FaultyUpstream._ok,
            Fault.STREAM_CUT: FaultyUpstream._cut,
            Fault.TRUNCATED: FaultyUpstream._truncated,
            Fault.MALFORMED_JSON: FaultyUpstream._malformed,
            Fault.MALFORMED_SSE: FaultyUpstream._malformed,
            Fault.WRONG_CONTENT_TYPE: FaultyUpstream._html,
            Fault.ERROR_EVENT: FaultyUpstream._error_event,
        }

    async def _status(self, ex: _Exchange, fault: Fault) -> bool:
        status = STATUS_FAULTS[fault]
        extra = []
        if status == 429 and self.retry_after is not None:
            extra.append(("retry-after", str(self.retry_after)))
        await ex.send_json(status, ex.dialect.error(status), extra)
        return True

    async def _ok(self, ex: _Exchange, fault: Fault) -> bool:
        delay = self.first_token_delay_s if fault is Fault.SLOW_FIRST_TOKEN else 0.0
        if not ex.stream:
            body = json.dumps(ex.dialect.complete(ex.answer)).encode()
            if delay:
                await ex.send(200, b"", declared_length=len(body))
                await asyncio.sleep(delay)
                ex.writer.write(body)
                await ex.writer.drain()
            else:
                await ex.send(200, body)
            return True
        events = ex.dialect.events(ex.answer)
        await ex.start_stream()
        if delay:
            await asyncio.sleep(delay)
        for n, data in enumerate([*events.head, *events.body, *events.tail]):
            if self.chunk_delay_s and n:
                await asyncio.sleep(self.chunk_delay_s)
            await ex.chunk(data)
        await ex.end_stream()
        return True

    async def _drop(self, ex: _Exchange, fault: Fault) -> bool:
        _reset(ex.writer)
        return False

    async def _hang(self, ex: _Exchange, fault: Fault) -> bool:
        await ex.reader.read()  # until the client gives up (or the server stops)
        return False

    async def _cut(self, ex: _Exchange, fault: Fault) -> bool:
        if not ex.stream:
            body = json.dumps(ex.dialect.complete(ex.answer)).encode()
            await ex.send(200, body[: len(body) // 2], declared_length=len(body))
        else:
            events = ex.dialect.events(ex.answer)
            await ex.start_stream()
            for data in [*events.head, *events.body[: max(1, len(events.body) // 2)]]:
                await ex.chunk(data)
        ex.writer.close()
        return False

    async def _truncated(self, ex: _Exchange, fault: Fault) -> bool:
        if not ex.stream:
            whole = ex.dialect.complete(ex.answer)
            await ex.send_json(200, {k: v for k, v in whole.items() if k in ("id", "model")})
            return True
        events = ex.dialect.events(ex.answer)
        await ex.start_stream()
        for data in [*events.head, *events.body[: max(1, len(events.body) // 2)]]:
            await ex.chunk(data)
        await ex.end_stream()
        return True

    async def _malformed(self, ex: _Exchange, fault: Fault) -> bool:
        if not ex.stream:
            await ex.send(200, MALFORMED_BODY)
            return True
        await ex.start_stream()
        for data in ex.dialect.events(ex.answer).head:
            await ex.chunk(data)
        await ex.chunk(MALFORMED_EVENT)
        await ex.end_stream()
        return True

    async def _html(self, ex: _Exchange, fault: Fault) -> bool:
        await ex.send(200, HTML_PAGE, "text/html; charset=utf-8")
        return True

    async def _error_event(self, ex: _Exchange, fault: Fault) -> bool:
        if not ex.stream:
            status = 529 if ex.dialect is AnthropicWire else 500
            await ex.send_json(200, ex.dialect.error(status))
            return True
        events = ex.dialect.events(ex.answer)
        await ex.start_stream()
        for data in [*events.head, *events.body[:1], ex.dialect.error_event()]:
            await ex.chunk(data)
        await ex.end_stream()
        return True


# ---------------------------------------------------------------- faults below HTTP


def refused_base_url() -> str:
    """A loopback base URL where nothing listens: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    return f"http://{LOOPBACK}:{port}/v1"


class Blackhole:
    """A loopback port whose connects hang: it listens, never accepts, and its backlog is full.

    ``with Blackhole() as hole: ... base_url=hole.base_url ...`` -- a client's connect waits
    until its own connect timeout, as with an unreachable host.
    """

    def __init__(self) -> None:
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self.port = 0

    def __enter__(self) -> Blackhole:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener = listener
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        self.port = listener.getsockname()[1]
        for _ in itertools.repeat(None, 64):
            if not self._fill_one():
                return
        self.close()
        raise RuntimeError("Blackhole: the listen backlog never filled; connects would not hang")

    def _fill_one(self) -> bool:
        """Connect once; True if the connection completed (the backlog had room)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((LOOPBACK, self.port))
        _, writable, _ = select.select([], [sock], [], 0.1)
        if writable and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            self._fillers.append(sock)
            return True
        sock.close()
        return False

    def close(self) -> None:
        for sock in self._fillers:
            sock.close()
        self._fillers.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

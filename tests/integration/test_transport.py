"""The lean HTTP/1.1 client (``transport: lean``) on its own, below the seam: the same pool on
uvloop as on asyncio, and URLs it refuses. What every transport must do (pooling, idle expiry,
back-pressure, timeouts, TLS, proxies, framing, gzip) is ``test_transport_conformance.py``; the
helpers here (``server``, ``answer``, ...) are shared with it and with
``test_transport_security.py``."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop

from tether.providers._transport import (
    BadURL,
    ConnectFailed,
    Pool,
    Response,
)

Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The head and body of one request (bodies carry Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


@asynccontextmanager
async def server(
    reply: Reply, tls: ssl.SSLContext | None = None, bodies: list[bytes] | None = None
) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server answering every request on a connection with ``reply``; yields its base URL and
    the request heads it saw (one per request, in order); request bodies go to ``bodies``."""
    heads: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head, body = await read_request(reader)
                heads.append(head)
                if bodies is not None:
                    bodies.append(body)
                await reply(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = srv.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    async with srv:
        yield f"{scheme}://{'localhost' if tls else '127.0.0.1'}:{port}/v1", heads


def answer(body: bytes, *extra: bytes) -> Reply:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" + b"".join(extra)
        writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    return reply


MakePool = Callable[..., Pool]


def new_pool(base: str, **kw: object) -> Pool:
    options: dict[str, object] = {
        "limit": 4,
        "connect_timeout_s": 2.0,
        "keepalive_s": 5.0,
        "tls": None,
        "proxy": None,
        "headers": {"content-type": "application/json", "authorization": "Bearer k"},
    }
    options.update(kw)
    return Pool(base, **options)  # type: ignore[arg-type]


@pytest.fixture
async def pool() -> AsyncIterator[MakePool]:
    """Makes pools; every one is closed on the test's loop when the test ends."""
    opened: list[Pool] = []

    def make(base: str, **kw: object) -> Pool:
        opened.append(new_pool(base, **kw))
        return opened[-1]

    yield make
    for each in opened:
        each.close()
    await asyncio.sleep(0.01)  # let the transports finish closing


async def body_of(response: Response) -> bytes:
    try:
        return await response.read()
    finally:
        response.release()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_runs_on_uvloop_as_on_asyncio(loop: str) -> None:
    async def main() -> bytes:
        async with server(answer(b"{}")) as (base, _):
            p = new_pool(base)
            try:
                return await body_of(await p.post(base + "/x", b"{}", read_timeout=2))
            finally:
                p.close()
                await asyncio.sleep(0.01)

    runner = uvloop.run if loop == "uvloop" else asyncio.run
    assert runner(main()) == b"{}"


async def test_refused_and_bad_urls(pool: MakePool) -> None:
    with pytest.raises(BadURL):
        pool("ftp://example.com/v1")
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    p = pool(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ConnectFailed):
        await p.post(f"http://127.0.0.1:{port}/v1/x", b"{}", read_timeout=1)
    assert p.connections == 0

"""The provider HTTP transport against small real servers on loopback: framing (length, chunked,
read-until-close, interim 1xx), gzip, the pool's limit and keep-alive, read timeouts, TLS, and
both kinds of proxy (absolute-form for http://, a CONNECT tunnel for https://)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvloop

from tether.providers._transport import (
    BadURL,
    ConnectFailed,
    ConnectionBroken,
    Pool,
    ProtocolError,
    ReadTimeout,
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


async def test_keeps_one_connection_alive_and_sends_the_headers(pool: MakePool) -> None:
    async with server(answer(b'{"ok":1}')) as (base, heads):
        p = pool(base)
        for _ in range(3):
            assert await body_of(await p.post(base + "/chat", b"{}", read_timeout=2)) == b'{"ok":1}'
        assert p.connections == 1
        assert heads[0].startswith(b"POST /v1/chat HTTP/1.1\r\n")
        assert b"authorization: Bearer k\r\n" in heads[0]
        assert b"content-length: 2\r\n" in heads[0]
        assert b"host: 127.0.0.1:" in heads[0]


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


async def test_a_large_request_body_arrives_whole(pool: MakePool) -> None:
    bodies: list[bytes] = []

    async def echo_size(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(b"%d" % len(bodies[-1]))(reader, writer)

    async with server(echo_size, bodies=bodies) as (base, _):
        big = b'{"x":"' + b"a" * 200_000 + b'"}'
        assert await body_of(
            await pool(base).post(base + "/big", big, read_timeout=2)
        ) == b"%d" % len(big)
        assert bodies == [big]


async def test_chunked_and_gzip_bodies_are_decoded_piece_by_piece(pool: MakePool) -> None:
    events = b"".join(b"data: %d\n\n" % i for i in range(2000))
    payload = gzip.compress(events)

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"content-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for i in range(0, len(payload), 40):
            piece = payload[i : i + 40]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with server(reply) as (base, _):
        p = pool(base)
        response = await p.post(base + "/s", b"{}", read_timeout=2)
        assert response.headers["content-encoding"] == "gzip"
        pieces = []
        while chunk := await response.next_chunk():
            pieces.append(chunk)
        response.release()
        assert b"".join(pieces) == events
        assert len(pieces) > 1
        assert p.connections == 1  # read to its end: kept


async def test_body_delimited_by_close_and_an_interim_answer(pool: MakePool) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
        writer.write(b"until the end")
        await writer.drain()
        writer.close()

    async with server(reply) as (base, _):
        p = pool(base)
        response = await p.post(base + "/c", b"{}", read_timeout=2)
        assert response.status == 200
        assert await body_of(response) == b"until the end"
        assert p.connections == 0


async def test_cut_body_breaks_and_garbage_is_a_protocol_error(pool: MakePool) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    async with server(cut) as (base, _):
        response = await pool(base).post(base + "/c", b"{}", read_timeout=2)
        with pytest.raises(ConnectionBroken, match="broke before the answer ended"):
            await body_of(response)
    async with server(garbage) as (base, _):
        with pytest.raises(ProtocolError, match=r"not valid HTTP/1\.1"):
            await pool(base).post(base + "/g", b"{}", read_timeout=2)


async def test_read_timeout_bounds_each_wait_and_closes_the_connection(pool: MakePool) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with server(slow) as (base, _):
        p = pool(base)
        with pytest.raises(ReadTimeout, match=r"within 0\.2 s"):
            await p.post(base + "/slow", b"{}", read_timeout=0.2)
        assert p.connections == 0


async def test_limit_makes_callers_wait_for_a_connection(pool: MakePool) -> None:
    async def delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        await answer(b"{}")(reader, writer)

    async with server(delayed) as (base, heads):
        p = pool(base, limit=2)
        peak = 0

        async def call() -> bytes:
            nonlocal peak
            response = await p.post(base + "/d", b"{}", read_timeout=2)
            peak = max(peak, p.connections)
            return await body_of(response)

        assert await asyncio.gather(*(call() for _ in range(6))) == [b"{}"] * 6
        assert peak == 2 and len(heads) == 6


async def test_idle_connections_expire_and_server_closes_are_noticed(pool: MakePool) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(b"{}")(reader, writer)
        writer.close()  # the server drops the kept-alive connection right after answering

    async with server(once) as (base, heads):
        p = pool(base)
        for _ in range(2):
            assert await body_of(await p.post(base + "/o", b"{}", read_timeout=2)) == b"{}"
            await asyncio.sleep(0.05)
        assert len(heads) == 2  # the second call did not reuse the closed connection
    async with server(answer(b"{}")) as (base, heads):
        p = pool(base, keepalive_s=0.05)
        await body_of(await p.post(base + "/o", b"{}", read_timeout=2))
        await asyncio.sleep(0.1)
        await body_of(await p.post(base + "/o", b"{}", read_timeout=2))
        assert p.connections == 1


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


async def test_absolute_form_through_an_http_proxy_with_basic_auth(pool: MakePool) -> None:
    async with server(answer(b'{"via":"proxy"}')) as (proxy, heads):
        proxy_url = proxy.replace("http://", "http://user:p%40ss@").removesuffix("/v1")
        p = pool("http://api.example.test/v1", proxy=proxy_url)
        response = await p.post("http://api.example.test/v1/chat", b"{}", read_timeout=2)
        assert await body_of(response) == b'{"via":"proxy"}'
        assert heads[0].startswith(b"POST http://api.example.test/v1/chat HTTP/1.1\r\n")
        assert b"host: api.example.test\r\n" in heads[0]
        assert b"proxy-authorization: Basic dXNlcjpwQHNz\r\n" in heads[0]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield cert, key


def tls_pair(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    return server_side, ssl.create_default_context(cafile=str(cert))


async def test_tls_verifies_the_server(certificate: tuple[Path, Path], pool: MakePool) -> None:
    server_side, client_side = tls_pair(certificate)
    async with server(answer(b"{}"), tls=server_side) as (base, _):
        assert (
            await body_of(
                await pool(base, tls=client_side).post(base + "/t", b"{}", read_timeout=2)
            )
            == b"{}"
        )
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await pool(base, tls=ssl.create_default_context()).post(
                base + "/t", b"{}", read_timeout=2
            )


async def test_https_through_a_connect_tunnel(
    certificate: tuple[Path, Path], pool: MakePool
) -> None:
    server_side, client_side = tls_pair(certificate)
    asked: list[bytes] = []

    async def tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        asked.append(head)
        _, port = head.split(b" ")[1].decode().rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with server(answer(b'{"tunnel":true}'), tls=server_side) as (base, heads):
        proxy = await asyncio.start_server(tunnel, "127.0.0.1", 0)
        proxy_port = proxy.sockets[0].getsockname()[1]
        async with proxy:
            p = pool(base, tls=client_side, proxy=f"http://127.0.0.1:{proxy_port}")
            response = await p.post(base + "/chat", b"{}", read_timeout=2)
            assert await body_of(response) == b'{"tunnel":true}'
        port = base.rsplit(":", 1)[1].split("/")[0]
        assert asked[0].startswith(f"CONNECT localhost:{port} HTTP/1.1\r\n".encode())
        assert heads[0].startswith(b"POST /v1/chat HTTP/1.1\r\n")  # origin-form inside

"""One conformance suite for every provider transport (``default``: aiohttp; ``lean``: tether's
own client), through the seam (:mod:`tether.providers.transport`), against real servers on
loopback: pooling, idle expiry, back-pressure, timeouts, TLS, proxies from the environment,
chunked and gzip bodies, broken and garbled answers. Each test fails when its behaviour is
removed from a transport (server-side accept counts, not the client's own bookkeeping)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.test_transport import Reply, answer, read_request, server
from tests.integration.test_transport_security import (
    _server_context,
    connect_proxy,
)
from tests.integration.test_transport_security import cert_files as cert_files  # the fixture
from tether.config import parse_config
from tether.providers._aiohttp import AiohttpTransport
from tether.providers._lean import LeanTransport
from tether.providers.anthropic import AnthropicProvider
from tether.providers.factory import build_provider
from tether.providers.openai import OpenAIProvider
from tether.providers.pricing import PriceTable
from tether.providers.transport import (
    BadHeader,
    BadURL,
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    Headers,
    HttpRequest,
    HttpResponse,
    ProtocolError,
    ReadTimeout,
    Transport,
    TransportOptions,
)
from tether.providers.transports import build_transport
from tether.testing import Blackhole, refused_base_url

TRANSPORTS = ["default", "lean"]
HEADERS = Headers({"content-type": "application/json", "authorization": "Bearer k"})
MakeTransport = Callable[..., Transport]
#: The streamed body the back-pressure test offers; a client that buffers it all reads 64 MiB.
BIG_BODY = 64 << 20
PIECE = b"x" * (64 << 10)


def request(url: str, *, read_timeout: float | None = 2.0, body: bytes = b"{}") -> HttpRequest:
    return HttpRequest("POST", url, HEADERS, body, read_timeout=read_timeout)


async def body_of(response: HttpResponse) -> bytes:
    try:
        return await response.read()
    finally:
        await response.aclose()


@pytest.fixture(params=TRANSPORTS)
def transport_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make(transport_name: str) -> AsyncIterator[MakeTransport]:
    """Builds transports of the kind under test; each is closed when the test ends."""
    made: list[Transport] = []

    def build(**options: object) -> Transport:
        settings: dict[str, object] = {"max_connections": 4, "connect_timeout_s": 2.0}
        settings.update(options)
        made.append(build_transport(transport_name, TransportOptions(**settings)))  # type: ignore[arg-type]
        return made[-1]

    yield build
    for each in made:
        await each.aclose()
    await asyncio.sleep(0.01)  # let the transports finish closing


@pytest.fixture(autouse=True)
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@dataclass
class Counted:
    """A server that counts the connections it accepted and the requests it answered."""

    base: str = ""
    accepts: int = 0
    requests: int = 0
    sent: int = 0  # body bytes the back-pressure reply got onto the wire
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def counted(reply: Reply, tls: ssl.SSLContext | None = None) -> AsyncIterator[Counted]:
    """Like ``test_transport.server``, counting accepts; it never closes a connection first."""
    state = Counted()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.accepts += 1
        try:
            while True:
                await read_request(reader)
                state.requests += 1
                await reply(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            state.closed.set()
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = srv.sockets[0].getsockname()[1]
    state.base = f"{'https://localhost' if tls else 'http://127.0.0.1'}:{port}/v1"
    async with srv:
        yield state


# ---------------------------------------------------------------- pooling and idle expiry


async def test_a_second_request_reuses_the_first_connection(make: MakeTransport) -> None:
    async with counted(answer(b'{"ok":1}')) as up:
        transport = make()
        for _ in range(3):
            assert await body_of(await transport.send(request(up.base + "/chat"))) == b'{"ok":1}'
        assert (up.accepts, up.requests) == (1, 3)


async def test_a_body_abandoned_early_does_not_go_back_to_the_pool(make: MakeTransport) -> None:
    async def long_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"0\r\n\r\n")

    async with counted(long_stream) as up:
        transport = make()
        response = await transport.send(request(up.base + "/s"))
        assert await anext(aiter(response.stream)) == b"first"
        await response.aclose()  # the rest is unread: the connection cannot be reused
        await asyncio.wait_for(up.closed.wait(), 2)
        assert await body_of(await transport.send(request(up.base + "/s"))) == b"first"
        assert up.accepts == 2


async def test_an_idle_connection_past_the_keepalive_is_not_reused(make: MakeTransport) -> None:
    async with counted(answer(b"{}")) as up:
        transport = make(keepalive_s=0.2)
        await body_of(await transport.send(request(up.base + "/o")))
        await body_of(await transport.send(request(up.base + "/o")))
        assert up.accepts == 1  # within the keep-alive: reused
        await asyncio.sleep(0.6)
        await body_of(await transport.send(request(up.base + "/o")))
        assert up.accepts == 2  # past it: a new connection, though the server kept the old


async def test_a_connection_the_server_closed_is_noticed(make: MakeTransport) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(b"{}")(reader, writer)
        writer.close()  # the server drops the kept-alive connection right after answering

    async with counted(once) as up:
        transport = make()
        for _ in range(2):
            assert await body_of(await transport.send(request(up.base + "/o"))) == b"{}"
            await asyncio.sleep(0.05)
        assert up.accepts == 2


async def test_callers_beyond_the_limit_wait_for_a_connection(make: MakeTransport) -> None:
    async def delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        await answer(b"{}")(reader, writer)

    async with counted(delayed) as up:
        transport = make(max_connections=2)

        async def call() -> bytes:
            return await body_of(await transport.send(request(up.base + "/d")))

        assert await asyncio.gather(*(call() for _ in range(6))) == [b"{}"] * 6
        assert up.accepts == 2 and up.requests == 6


# ---------------------------------------------------------------- back-pressure


async def test_an_unread_streamed_body_is_not_buffered_whole(make: MakeTransport) -> None:
    up = Counted()

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.set_write_buffer_limits(high=1 << 16)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % BIG_BODY)
        while up.sent < BIG_BODY:
            writer.write(PIECE)
            await writer.drain()  # blocks while the client does not read
            up.sent += len(PIECE)

    async with counted(firehose) as state:
        up.base = state.base
        transport = make()
        response = await transport.send(request(up.base + "/big"))
        assert await anext(aiter(response.stream))
        settled, last = 0, -1
        while settled < 3 and up.sent < BIG_BODY:  # until the server makes no more progress
            last, settled = up.sent, settled + 1 if up.sent == last else 0
            await asyncio.sleep(0.1)
        await response.aclose()
    # socket buffers and the client's own (about 1 MiB) hold a few MiB; never the whole body
    assert up.sent < BIG_BODY // 4


# ---------------------------------------------------------------- timeouts and failures


async def test_connect_timeout(make: MakeTransport) -> None:
    with Blackhole() as hole:
        transport = make(connect_timeout_s=0.3)
        with pytest.raises(ConnectTimeout):  # (wait_for: without one, fail, not hang)
            await asyncio.wait_for(transport.send(request(hole.base_url + "/x")), 10)
        slow = make(connect_timeout_s=30)
        short = HttpRequest("POST", hole.base_url + "/x", HEADERS, connect_timeout=0.3)
        with pytest.raises(ConnectTimeout):  # the request's (shorter) one wins
            await asyncio.wait_for(slow.send(short), 10)


async def test_read_timeout_bounds_each_wait_not_the_whole_answer(make: MakeTransport) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(6):
            await asyncio.sleep(0.15)
            writer.write(b"1\r\n%d\r\n" % i)
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async with counted(silent) as up:
        with pytest.raises(ReadTimeout):  # (wait_for: without a read timeout, fail, not hang)
            await asyncio.wait_for(make().send(request(up.base + "/slow", read_timeout=0.2)), 5)
    async with counted(trickle) as up:
        response = await make().send(request(up.base + "/t", read_timeout=0.6))
        assert await body_of(response) == b"012345"  # 0.9 s in all, never 0.6 s silent


async def test_refused_connection(make: MakeTransport) -> None:
    with pytest.raises(ConnectFailed):
        await make().send(request(refused_base_url() + "/x"))


async def test_bytes_before_a_broken_body_then_the_break(
    make: MakeTransport, transport_name: str, request: pytest.FixtureRequest
) -> None:
    if transport_name == "default":
        request.applymarker(
            pytest.mark.xfail(
                reason="aiohttp raises at the next read and drops the bytes it buffered",
                strict=True,
            )
        )

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    async with counted(cut) as up:
        response = await make().send(HttpRequest("POST", up.base + "/c", HEADERS, b"{}"))
        await asyncio.sleep(0.1)  # the bytes and the close have both arrived
        pieces = []
        with pytest.raises(ConnectionBroken):
            async for piece in response.stream:
                pieces.append(piece)
        await response.aclose()
        assert b"".join(pieces) == b"only part"


async def test_a_cut_body_and_garbage_are_errors(make: MakeTransport) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    async with counted(cut) as up:
        with pytest.raises(ConnectionBroken):
            await body_of(await make().send(request(up.base + "/c")))
    async with counted(garbage) as up:
        with pytest.raises(ProtocolError):
            await make().send(request(up.base + "/g"))


async def test_a_bad_header_or_url_is_refused_before_anything_is_sent(
    make: MakeTransport,
) -> None:
    async with counted(answer(b"{}")) as up:
        for value in ("k\r\nx-injected: 1", "k\nx", "k\x00x"):
            with pytest.raises(BadHeader, match="'x-team'"):
                Headers({"x-team": value})
            with pytest.raises(BadURL, match="space or control"):
                await make().send(request(up.base + "/chat" + value))
        await asyncio.sleep(0.05)
        assert up.accepts == 0


# ---------------------------------------------------------------- bodies


async def test_chunked_and_gzip_bodies_are_decoded_piece_by_piece(make: MakeTransport) -> None:
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

    async with counted(reply) as up:
        transport = make()
        response = await transport.send(request(up.base + "/s"))
        assert response.headers["content-encoding"] == "gzip"
        pieces = [piece async for piece in response.stream]
        await response.aclose()
        assert b"".join(pieces) == events
        assert len(pieces) > 1
        await body_of(await transport.send(request(up.base + "/s")))
        assert up.accepts == 1  # read to its end: the connection was kept


async def test_a_body_delimited_by_close_after_an_interim_answer(make: MakeTransport) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
        writer.write(b"until the end")
        await writer.drain()
        writer.close()

    async with counted(reply) as up:
        response = await make().send(request(up.base + "/c"))
        assert response.status == 200
        assert await body_of(response) == b"until the end"


async def test_the_request_arrives_as_given(make: MakeTransport) -> None:
    bodies: list[bytes] = []

    async def echo_size(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(b"%d" % len(bodies[-1]))(reader, writer)

    async with server(echo_size, bodies=bodies) as (base, heads):
        big = b'{"x":"' + b"a" * 200_000 + b'"}'
        assert await body_of(await make().send(request(base + "/big", body=big))) == b"%d" % len(
            big
        )
    assert bodies == [big]
    head = heads[0].lower()
    assert head.startswith(b"post /v1/big http/1.1\r\n")
    assert b"authorization: bearer k\r\n" in head
    assert b"content-length: %d\r\n" % len(big) in head
    assert b"host: 127.0.0.1:" in head


# ---------------------------------------------------------------- TLS


@dataclass
class Certs:
    right: ssl.SSLContext  # localhost and api.example.test
    wrong: ssl.SSLContext  # wrong.example
    cafile: Path  # trusts both


@pytest.fixture
def certs(cert_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Certs:
    """The certificates; ``SSL_CERT_FILE`` names the bundle trusting both (as a deployment
    would set it), so the transports find it themselves."""
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_files["ca"]))
    return Certs(
        right=_server_context(cert_files["cert"], cert_files["key"]),
        wrong=_server_context(cert_files["wcert"], cert_files["wkey"]),
        cafile=cert_files["ca"],
    )


async def test_tls_trusts_ssl_cert_file_and_refuses_another_name(
    make: MakeTransport, certs: Certs
) -> None:
    async with counted(answer(b'{"tls":1}'), tls=certs.right) as up:
        assert await body_of(await make().send(request(up.base + "/t"))) == b'{"tls":1}'
    async with counted(answer(b"{}"), tls=certs.wrong) as up:  # trusted, but for wrong.example
        with pytest.raises(ConnectFailed, match="Hostname mismatch"):
            await make().send(request(up.base + "/t"))
        assert up.requests == 0
    async with counted(answer(b"{}"), tls=certs.right) as up:
        strict = make(tls=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # trusting no certificate
        with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await strict.send(request(up.base + "/t"))


# ---------------------------------------------------------------- proxies from the environment


async def test_http_proxy_from_the_env_gets_the_absolute_form_with_basic_auth(
    make: MakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with server(answer(b'{"via":"proxy"}')) as (proxy, heads):
        monkeypatch.setenv("HTTP_PROXY", proxy.replace("http://", "http://user:p%40ss@")[:-3])
        response = await make().send(request("http://api.example.test/v1/chat"))
        assert await body_of(response) == b'{"via":"proxy"}'
    head = heads[0].lower()
    assert head.startswith(b"post http://api.example.test/v1/chat http/1.1\r\n")
    assert b"host: api.example.test\r\n" in head
    assert b"proxy-authorization: basic dxnlcjpwqhnz\r\n" in head


async def test_no_proxy_exempts_a_host(
    make: MakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with counted(answer(b'{"direct":1}')) as up:
        monkeypatch.setenv("HTTP_PROXY", refused_base_url()[:-3])
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert await body_of(await make().send(request(up.base + "/x"))) == b'{"direct":1}'


@pytest.mark.parametrize("proxy_tls", [False, True], ids=["http-proxy", "https-proxy"])
async def test_https_through_a_connect_tunnel_from_the_env(
    make: MakeTransport, certs: Certs, monkeypatch: pytest.MonkeyPatch, proxy_tls: bool
) -> None:
    async with (
        counted(answer(b'{"tunnel":true}'), tls=certs.right) as up,
        connect_proxy(certs.right if proxy_tls else None) as proxy,
    ):
        proxy.routes["api.example.test:443"] = int(up.base.rsplit(":", 1)[1].split("/")[0])
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        response = await make().send(request("https://api.example.test/v1/chat"))
        assert await body_of(response) == b'{"tunnel":true}'
    assert proxy.asked[0].startswith(b"CONNECT api.example.test:443 HTTP/1.1\r\n")
    assert b"proxy-authorization: basic dxnlcjpwqhnz\r\n" in proxy.asked[0].lower()
    assert up.requests == 1


# ---------------------------------------------------------------- the factory picks by config


@pytest.mark.parametrize(("name", "kind"), [("default", AiohttpTransport), ("lean", LeanTransport)])
def test_the_factory_gives_providers_the_transport_their_config_names(
    name: str, kind: type
) -> None:
    text = f"""\
providers:
  a: {{kind: openai, transport: {name}}}
  b: {{kind: anthropic, transport: {name}}}
"""
    config = parse_config(text, "tether.yaml", {})
    prices = PriceTable.load()
    for provider_name in ("a", "b"):
        provider = build_provider(provider_name, config.providers[provider_name], prices)
        assert isinstance(provider, OpenAIProvider | AnthropicProvider)  # opened nothing yet
        assert type(provider.http.transport) is kind

"""The provider HTTP client against hostile or careless settings, on loopback servers: an
``https://`` proxy is spoken to over TLS (tunnels carry a second TLS session inside it), a
``CONNECT`` always names host:port, certificates for another name are refused at either hop, and
a CR, LF or NUL in an API key or a configured header never reaches the wire."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop
from pydantic import SecretStr

from tests.integration.test_transport import answer, body_of, new_pool, server
from tether.config import ConfigProblems, parse_config
from tether.config.models import AnthropicProviderConfig, OpenAIProviderConfig
from tether.errors import ConfigError
from tether.providers._transport import BadHeader, BadURL, ConnectFailed, Pool
from tether.providers.anthropic import AnthropicProvider
from tether.providers.base import CallContext
from tether.providers.openai import OpenAIProvider
from tether.providers.pricing import PriceTable
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

CHAT = {
    "id": "c1",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
}


@dataclass
class Certs:
    """Server contexts for the right name (localhost, api.example.test) and for another name
    (wrong.example); ``trusting`` is a client context that trusts both certificates."""

    right: ssl.SSLContext
    wrong: ssl.SSLContext
    cafile: Path
    trusting: ssl.SSLContext


def _certificate(folder: Path, name: str, san: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    right = _certificate(folder, "localhost", "DNS:localhost,DNS:api.example.test")
    wrong = _certificate(folder, "wrong.example", "DNS:wrong.example")
    cafile = folder / "both.pem"
    cafile.write_bytes(right[0].read_bytes() + wrong[0].read_bytes())
    yield {"cert": right[0], "key": right[1], "wcert": wrong[0], "wkey": wrong[1], "ca": cafile}


@pytest.fixture
def certs(cert_files: dict[str, Path]) -> Certs:
    return Certs(
        right=_server_context(cert_files["cert"], cert_files["key"]),
        wrong=_server_context(cert_files["wcert"], cert_files["wkey"]),
        cafile=cert_files["ca"],
        trusting=ssl.create_default_context(cafile=str(cert_files["ca"])),
    )


@dataclass
class Proxy:
    """A CONNECT proxy on loopback: ``url`` to reach it, the request heads it received, and
    where each requested authority is sent (``api.example.test:443`` -> a local port)."""

    url: str
    asked: list[bytes]
    routes: dict[str, int] = field(default_factory=dict)


@asynccontextmanager
async def connect_proxy(tls: ssl.SSLContext | None) -> AsyncIterator[Proxy]:
    """A proxy answering ``CONNECT host:port`` with a tunnel to 127.0.0.1 (the port from its
    routes, else the one asked for); it listens with TLS when given a context."""
    proxy = Proxy("", [])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            proxy.asked.append(head)
            authority = head.split(b" ")[1].decode()
            port = proxy.routes.get(authority) or int(authority.rsplit(":", 1)[1])
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = srv.sockets[0].getsockname()[1]
    proxy.url = f"{'https' if tls else 'http'}://user:p%40ss@localhost:{port}"
    async with srv:
        yield proxy


async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except ConnectionError:
        pass
    finally:
        dst.close()


async def closing(pool: Pool) -> None:
    pool.close()
    await asyncio.sleep(0.01)  # let the transports finish closing


# ---------------------------------------------------------------- an https:// proxy


async def test_http_upstream_through_an_https_proxy_is_sent_over_tls(certs: Certs) -> None:
    async with server(answer(b'{"via":"tls proxy"}'), tls=certs.right) as (proxy, heads):
        proxy_url = proxy.replace("https://", "https://user:p%40ss@").removesuffix("/v1")
        p = new_pool("http://api.example.test/v1", tls=certs.trusting, proxy=proxy_url)
        try:
            response = await p.post("http://api.example.test/v1/chat", b"{}", read_timeout=2)
            assert await body_of(response) == b'{"via":"tls proxy"}'
        finally:
            await closing(p)
    assert heads[0].startswith(b"POST http://api.example.test/v1/chat HTTP/1.1\r\n")
    assert b"proxy-authorization: Basic dXNlcjpwQHNz\r\n" in heads[0]  # inside TLS, not in clear


async def tunnel_through_tls_proxy(certs: Certs) -> None:
    async with (
        server(answer(b'{"tunnel":"tls in tls"}'), tls=certs.right) as (base, heads),
        connect_proxy(certs.right) as proxy,
    ):
        port = int(base.rsplit(":", 1)[1].split("/")[0])
        proxy.routes["api.example.test:443"] = port
        p = new_pool("https://api.example.test/v1", tls=certs.trusting, proxy=proxy.url)
        try:
            response = await p.post("https://api.example.test/v1/chat", b"{}", read_timeout=2)
            assert await body_of(response) == b'{"tunnel":"tls in tls"}'
        finally:
            await closing(p)
    assert proxy.asked[0].startswith(b"CONNECT api.example.test:443 HTTP/1.1\r\n")
    assert b"proxy-authorization: Basic dXNlcjpwQHNz\r\n" in proxy.asked[0]
    assert heads[0].startswith(b"POST /v1/chat HTTP/1.1\r\n")
    assert b"host: api.example.test\r\n" in heads[0]  # origin requests keep the usual Host


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_https_upstream_through_an_https_proxy_is_tls_inside_tls(certs: Certs, loop: str) -> None:
    runner = uvloop.run if loop == "uvloop" else asyncio.run
    runner(tunnel_through_tls_proxy(certs))


async def test_a_proxy_certificate_for_another_name_is_refused(certs: Certs) -> None:
    async with connect_proxy(certs.wrong) as proxy:
        p = new_pool("https://api.example.test/v1", tls=certs.trusting, proxy=proxy.url)
        try:
            with pytest.raises(ConnectFailed, match=r"proxy localhost:.*Hostname mismatch"):
                await p.post("https://api.example.test/v1/chat", b"{}", read_timeout=2)
        finally:
            await closing(p)
    assert proxy.asked == []  # nothing, not even the CONNECT, left before verification


async def test_an_origin_certificate_for_another_name_is_refused_inside_the_tunnel(
    certs: Certs,
) -> None:
    async with (
        server(answer(b"{}"), tls=certs.wrong) as (base, heads),
        connect_proxy(certs.right) as proxy,
    ):
        port = int(base.rsplit(":", 1)[1].split("/")[0])
        p = new_pool(base, tls=certs.trusting, proxy=proxy.url)
        try:
            with pytest.raises(ConnectFailed, match=r"through the proxy.*Hostname mismatch"):
                await p.post(base + "/chat", b"{}", read_timeout=2)
        finally:
            await closing(p)
    assert proxy.asked[0].startswith(f"CONNECT localhost:{port} HTTP/1.1\r\n".encode())
    assert heads == []


@pytest.mark.parametrize("transport", ["default", "lean"])
async def test_a_provider_reaches_an_http_upstream_through_an_https_proxy_from_the_env(
    certs: Certs, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ssl_cert_dir"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.cafile))
    async with server(answer(json.dumps(CHAT).encode()), tls=certs.right) as (proxy, heads):
        monkeypatch.setenv("HTTP_PROXY", proxy.removesuffix("/v1"))
        config = OpenAIProviderConfig(
            kind="openai",
            base_url="http://api.example.test/v1",
            api_key=SecretStr("sk-t"),
            transport=transport,  # type: ignore[arg-type]
        )
        provider = OpenAIProvider(config, "openai", PriceTable.load())
        try:
            request = ModelRequest([Message("user", "hello")])
            response = await provider.model("m").complete(request, CallContext(Trace("t")))
        finally:
            await provider.aclose()
    assert response.text == "hi"
    assert heads[0].startswith(b"POST http://api.example.test/v1/chat/completions HTTP/1.1\r\n")


# ---------------------------------------------------------------- CONNECT names host:port


@pytest.mark.parametrize(
    ("base", "authority"),
    [
        ("https://api.example.test/v1", b"api.example.test:443"),
        ("https://api.example.test:8443/v1", b"api.example.test:8443"),
        ("https://[::1]/v1", b"[::1]:443"),
    ],
)
async def test_connect_always_names_the_port(base: str, authority: bytes) -> None:
    async with connect_proxy(None) as proxy:
        proxy.routes[authority.decode()] = 9  # nothing listens there: the tunnel fails
        p = new_pool(base, tls=ssl.create_default_context(), proxy=proxy.url)
        try:
            with pytest.raises(ConnectFailed):
                await p.post(base + "/chat", b"{}", read_timeout=2)
        finally:
            await closing(p)
    assert proxy.asked[0].startswith(
        b"CONNECT %s HTTP/1.1\r\nhost: %s\r\n" % (authority, authority)
    )


# ---------------------------------------------------------------- no header injection


@asynccontextmanager
async def listener() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that records whatever bytes arrive on any connection."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with srv:
        yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/v1", received


BAD_VALUES = [
    pytest.param("k\r\nx-injected: 1", "carriage return", id="CR"),
    pytest.param("k\nx-injected: 1", "line feed", id="LF"),
    pytest.param("k\x00x", "NUL", id="NUL"),
]


@pytest.mark.parametrize(("value", "what"), BAD_VALUES)
async def test_the_transport_refuses_a_header_that_would_split_the_head(
    value: str, what: str
) -> None:
    async with listener() as (base, received):
        with pytest.raises(BadHeader, match=f"'x-team'.*{what}"):
            new_pool(base, headers={"x-team": value})
        with pytest.raises(BadHeader, match="not an HTTP token"):
            new_pool(base, headers={value: "v"})
        p = new_pool(base)
        try:
            with pytest.raises(BadURL, match="space or control"):
                await p.post(base + "/chat" + value, b"{}", read_timeout=2)
        finally:
            await closing(p)
        with pytest.raises(BadURL, match="host"):
            new_pool("http://api\x00.example.test/v1")
        with pytest.raises(BadURL, match=r"'socks5://proxy\.internal:1080'") as info:
            new_pool(base, proxy="socks5://user:s3cret@proxy.internal:1080")
        assert "s3cret" not in str(info.value)
        await asyncio.sleep(0.05)
    assert received == []  # no connection was even opened


@pytest.mark.parametrize(("value", "what"), BAD_VALUES)
async def test_a_provider_refuses_an_api_key_or_header_with_cr_lf_or_nul(
    value: str, what: str
) -> None:
    prices = PriceTable.load()
    async with listener() as (base, received):
        openai_config = OpenAIProviderConfig.model_construct(
            kind="openai", base_url=base, api_key=SecretStr("sk-" + value)
        )  # as code may build it, past the config file's check
        with pytest.raises(ConfigError, match=f"'openai'.*'authorization'.*{what}") as info:
            OpenAIProvider(openai_config, "openai", prices)
        assert "sk-" not in str(info.value) and "injected" not in str(info.value)
        anthropic_config = AnthropicProviderConfig.model_construct(
            kind="anthropic", base_url=base, headers={"x-team": value}
        )
        with pytest.raises(ConfigError, match=f"'claude'.*'x-team'.*{what}"):
            AnthropicProvider(anthropic_config, "claude", prices)
        await asyncio.sleep(0.05)
    assert received == []


@pytest.mark.parametrize(("value", "what"), BAD_VALUES)
def test_tether_check_refuses_them_naming_the_yaml_path(value: str, what: str) -> None:
    text = f"""\
providers:
  openai:
    kind: openai
    api_key: ${{KEY}}
  claude:
    kind: anthropic
    anthropic_version: ${{KEY}}
    headers:
      x-team: ${{KEY}}
  other:
    kind: openai
    headers:
      {json.dumps("x-team" + value)}: v
"""
    with pytest.raises(ConfigProblems) as info:
        parse_config(text, "tether.yaml", {"KEY": "sk-" + value})
    problems = {p.path: p for p in info.value.problems}
    assert set(problems) == {
        "providers.openai.api_key",
        "providers.claude.anthropic_version",
        "providers.claude.headers",
        "providers.other.headers",
    }
    assert problems["providers.openai.api_key"].line == 4
    assert what in problems["providers.openai.api_key"].message
    assert what in problems["providers.claude.anthropic_version"].message
    assert f"'x-team' cannot be sent: its value contains a {what}" in str(info.value)
    assert "not an HTTP token" in problems["providers.other.headers"].message
    assert "sk-" not in str(info.value)
    with pytest.raises(ValueError, match=what) as direct:
        OpenAIProviderConfig(kind="openai", api_key=SecretStr("sk-" + value))
    assert "sk-" not in str(direct.value)  # the input is not echoed either


def test_tether_check_accepts_the_lean_transport_and_names_the_choices() -> None:
    text = """\
providers:
  fast: {kind: openai, transport: lean}
  claude: {kind: anthropic, transport: default}
  plain: {kind: openai}
"""
    config = parse_config(text, "tether.yaml", {})
    assert isinstance(fast := config.providers["fast"], OpenAIProviderConfig)
    assert isinstance(plain := config.providers["plain"], OpenAIProviderConfig)
    assert isinstance(claude := config.providers["claude"], AnthropicProviderConfig)
    assert (fast.transport, claude.transport, plain.transport) == ("lean", "default", "default")
    with pytest.raises(ConfigProblems) as info:
        parse_config("providers:\n  fast: {kind: openai, transport: httpx}\n", "tether.yaml", {})
    (problem,) = info.value.problems
    assert problem.path == "providers.fast.transport"
    assert "'default'" in problem.message and "'lean'" in problem.message

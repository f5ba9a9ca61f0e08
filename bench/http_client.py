"""Provider transport cost through the seam: ``OpenAIProvider(...).model("m").complete`` on
each transport (``default``: aiohttp; ``lean``: tether's own HTTP/1.1 client) vs a bare aiohttp
POST (and, with ``--httpx``, a bare httpx one).

All call the same ``FaultyUpstream(latency_ms=20)``, run in a child process so that only the
client's work is counted, at concurrency 1, 16 and 64, alternately in rounds so machine noise
hits all alike. The bare clients do the least possible (one session, POST, read the body); the
provider targets do everything tether does for a call below the pipeline: build the request,
the transport, the timeout, JSON parsing, usage and cost. Prints, per target, requests per
second, p99 latency, CPU microseconds per call (process CPU time over calls) and that CPU over
the bare aiohttp call's (< 1: cheaper than a bare aiohttp call).

    python bench/http_client.py [--calls-per-worker 40] [--rounds 3] [--uvloop] [--httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from pydantic import SecretStr

from tether.config.models import OpenAIProviderConfig
from tether.providers.base import CallContext
from tether.providers.openai import OpenAIProvider
from tether.providers.pricing import PriceTable
from tether.providers.transport import TransportName
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

CONCURRENCY = (1, 16, 64)
TRANSPORTS: tuple[TransportName, ...] = ("default", "lean")
LATENCY_MS = 20
UPSTREAM = """
import sys, time
from tether.testing.upstream import FaultyUpstream
with FaultyUpstream(text="hi there", latency_ms=float(sys.argv[1])) as up:
    print(up.base_url, flush=True)
    sys.stdin.read()  # until the parent closes the pipe
"""


@dataclass
class Sample:
    """One timed batch: calls made, wall and CPU time, every call's latency."""

    calls: int
    seconds: float
    cpu_seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.calls * 1e6


async def timed(call: Callable[[], Awaitable[object]], concurrency: int, per_worker: int) -> Sample:
    """Run ``call`` ``per_worker`` times in each of ``concurrency`` workers."""
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Sample(concurrency * per_worker, wall, cpu, latencies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(concurrency: int, names: list[str], samples: dict[str, list[Sample]]) -> None:
    def med(name: str, what: Callable[[Sample], float]) -> float:
        return statistics.median(what(s) for s in samples[name])

    def p99(name: str) -> float:
        return percentile([x for s in samples[name] for x in s.latencies], 0.99) * 1e3

    base_cpu = med(names[0], lambda s: s.cpu_us)
    cells = [
        f"{med(n, lambda s: s.rps):>6.0f} {p99(n):>6.1f} {med(n, lambda s: s.cpu_us):>5.0f}"
        f" {med(n, lambda s: s.cpu_us) / base_cpu:>5.2f}"
        for n in names
    ]
    print(f"{concurrency:>5}  " + "  ".join(cells))


async def compare(base_url: str, per_worker: int, rounds: int, with_httpx: bool) -> None:
    messages = [Message("system", "You are terse."), Message("user", "hello")]
    request = ModelRequest(messages)
    raw_body = {
        "model": "m",
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }
    ctx = CallContext(Trace("bench"))  # the pipeline's own cost is bench/sdk_overhead.py's
    providers = {
        name: OpenAIProvider(
            OpenAIProviderConfig(
                kind="openai", base_url=base_url, api_key=SecretStr("sk-x"), transport=name
            ),
            "bench",
            PriceTable.load(),
        )
        for name in TRANSPORTS
    }
    limit = 100  # providers.NAME.max_connections' default
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))

    async def via_aiohttp() -> object:
        async with session.post(base_url + "/chat/completions", json=raw_body) as response:
            return await response.read()

    calls: dict[str, Callable[[], Awaitable[object]]] = {"aiohttp": via_aiohttp}
    client = None
    if with_httpx:
        import httpx

        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=limit))

        async def via_httpx() -> object:
            assert client is not None
            response = await client.post(base_url + "/chat/completions", json=raw_body)
            return response.content

        calls["httpx"] = via_httpx
    for name, provider in providers.items():
        calls[name] = functools.partial(provider.model("m").complete, request, ctx)
    names = list(calls)
    print(f"upstream latency {LATENCY_MS} ms (child process); ideal RPS = 50 x concurrency")
    print(f"median of {rounds} rounds, {per_worker} calls per worker per round")
    print("per target: RPS, p99 ms, CPU us per call, CPU / bare aiohttp's")
    print("conc.  " + "  ".join(f"{n:^25}" for n in names))
    try:
        for concurrency in CONCURRENCY:
            for call in calls.values():
                await timed(call, concurrency, 3)  # warm up: open the connections
            samples: dict[str, list[Sample]] = {n: [] for n in names}
            for _ in range(rounds):
                for target, call in calls.items():
                    samples[target].append(await timed(call, concurrency, per_worker))
            report(concurrency, names, samples)
    finally:
        await session.close()
        if client is not None:
            await client.aclose()
        for provider in providers.values():
            await provider.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls-per-worker", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    parser.add_argument("--httpx", action="store_true", help="add a bare httpx client")
    args = parser.parse_args()
    upstream = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, str(LATENCY_MS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdin is not None
    try:
        base_url = upstream.stdout.readline().strip()
        work = compare(base_url, args.calls_per_worker, args.rounds, args.httpx)
        if args.uvloop:
            import uvloop

            uvloop.run(work)
        else:
            asyncio.run(work)
    finally:
        upstream.stdin.close()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()

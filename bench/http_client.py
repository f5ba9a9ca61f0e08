"""Provider transport cost: ``OpenAIProvider(...).model("m").complete`` vs a bare aiohttp POST.

Both call the same ``FaultyUpstream(latency_ms=20)``, run in a child process so that only the
client's work is counted, at concurrency 1, 16 and 64, alternately in rounds so machine noise
hits both alike. The aiohttp side is a general-purpose client doing the least possible (one
``ClientSession``, POST, read the body); the provider side is everything tether does for a call
below the pipeline: build the request, its own HTTP/1.1 transport (``providers/_transport.py``),
the timeout, JSON parsing, usage and cost. Prints requests per second, p50/p99 latency and CPU
microseconds per call (process CPU time over calls); ``prov/aio`` < 1 means the provider costs
less CPU than a bare aiohttp call.

    python bench/http_client.py [--calls-per-worker 40] [--rounds 3] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
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
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

CONCURRENCY = (1, 16, 64)
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


def report(concurrency: int, aio: list[Sample], prov: list[Sample]) -> None:
    def med(samples: list[Sample], what: Callable[[Sample], float]) -> float:
        return statistics.median(what(s) for s in samples)

    def pct(samples: list[Sample], q: float) -> float:
        return percentile([x for s in samples for x in s.latencies], q) * 1e3

    aio_cpu, prov_cpu = med(aio, lambda s: s.cpu_us), med(prov, lambda s: s.cpu_us)
    print(
        f"{concurrency:>5} {med(aio, lambda s: s.rps):>8.0f} {med(prov, lambda s: s.rps):>8.0f}"
        f" {pct(aio, 0.5):>7.1f} {pct(prov, 0.5):>7.1f} {pct(aio, 0.99):>7.1f}"
        f" {pct(prov, 0.99):>7.1f} {aio_cpu:>7.0f} {prov_cpu:>7.0f} {prov_cpu / aio_cpu:>8.2f}"
    )


async def compare(base_url: str, per_worker: int, rounds: int) -> None:
    messages = [Message("system", "You are terse."), Message("user", "hello")]
    request = ModelRequest(messages)
    raw_body = {
        "model": "m",
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }
    config = OpenAIProviderConfig(kind="openai", base_url=base_url, api_key=SecretStr("sk-x"))
    provider = OpenAIProvider(config, "bench", PriceTable.load())
    model = provider.model("m")
    ctx = CallContext(Trace("bench"))  # the pipeline's own cost is bench/sdk_overhead.py's

    async def via_provider() -> object:
        return await model.complete(request, ctx)

    connector = aiohttp.TCPConnector(limit=config.max_connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def via_aiohttp() -> object:
            async with session.post(base_url + "/chat/completions", json=raw_body) as response:
                return await response.read()

        print(f"upstream latency {LATENCY_MS} ms (child process); ideal RPS = 50 x concurrency")
        print(f"median of {rounds} rounds, {per_worker} calls per worker per round")
        print("conc.  aio RPS prov RPS aio p50 prv p50 aio p99 prv p99  aio us  prv us prov/aio")
        for concurrency in CONCURRENCY:
            await timed(via_aiohttp, concurrency, 3)  # warm up: open the connections
            await timed(via_provider, concurrency, 3)
            aio, prov = [], []
            for _ in range(rounds):
                aio.append(await timed(via_aiohttp, concurrency, per_worker))
                prov.append(await timed(via_provider, concurrency, per_worker))
            report(concurrency, aio, prov)
    await provider.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls-per-worker", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    args = parser.parse_args()
    upstream = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, str(LATENCY_MS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None and upstream.stdin is not None
    try:
        work = compare(upstream.stdout.readline().strip(), args.calls_per_worker, args.rounds)
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

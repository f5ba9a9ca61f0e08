"""Provider transport throughput: ``OpenAIProvider(...).model("m").complete`` vs raw aiohttp.

Both sides call the same loopback ``FaultyUpstream(latency_ms=20)`` with the same body, at
concurrency 1, 16 and 64, alternately in rounds so machine noise hits both alike. The raw side is
the floor (one ``aiohttp.ClientSession``, POST, read the body); the provider side adds building the
request, the timeout, JSON parsing, usage and cost. Prints requests per second, per-call latency
(p50 / p99) and the provider/raw RPS ratio (1.00 = the provider costs nothing over raw HTTP).
With 20 ms upstream latency the ideal is 50 RPS per concurrent caller.

    python bench/http_client.py [--calls-per-worker 40] [--rounds 3] [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
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
from tether.testing.upstream import FaultyUpstream
from tether.types import Message, ModelRequest

CONCURRENCY = (1, 16, 64)
LATENCY_MS = 20


@dataclass
class Sample:
    """One timed batch: calls made, wall time and every call's latency."""

    calls: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.calls / self.seconds


async def timed(call: Callable[[], Awaitable[object]], concurrency: int, per_worker: int) -> Sample:
    """Run ``call`` ``per_worker`` times in each of ``concurrency`` workers."""
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Sample(concurrency * per_worker, time.perf_counter() - started, latencies)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(concurrency: int, raw: list[Sample], provider: list[Sample]) -> None:
    raw_rps = statistics.median(s.rps for s in raw)
    prov_rps = statistics.median(s.rps for s in provider)
    raw_lat = [x for s in raw for x in s.latencies]
    prov_lat = [x for s in provider for x in s.latencies]
    print(
        f"{concurrency:>5} {raw_rps:>9.0f} {prov_rps:>9.0f} {prov_rps / raw_rps:>7.2f}"
        f" {percentile(raw_lat, 0.5) * 1e3:>8.1f} {percentile(prov_lat, 0.5) * 1e3:>8.1f}"
        f" {percentile(raw_lat, 0.99) * 1e3:>8.1f} {percentile(prov_lat, 0.99) * 1e3:>8.1f}"
    )


async def main(per_worker: int, rounds: int) -> None:
    messages = [Message("system", "You are terse."), Message("user", "hello")]
    request = ModelRequest(messages)
    raw_body = {
        "model": "m",
        "messages": [{"role": m.role, "content": m.content} for m in messages],
    }
    with FaultyUpstream(text="hi there", latency_ms=LATENCY_MS) as upstream:
        url = upstream.base_url + "/chat/completions"
        config = OpenAIProviderConfig(
            kind="openai", base_url=upstream.base_url, api_key=SecretStr("sk-x")
        )
        provider = OpenAIProvider(config, "bench", PriceTable.load())
        model = provider.model("m")
        ctx = CallContext(Trace("bench"))  # providers write nothing to it; the pipeline's trace
        # (ids from os.urandom, events) is measured by bench/sdk_overhead.py, not here

        async def via_provider() -> object:
            return await model.complete(request, ctx)

        connector = aiohttp.TCPConnector(limit=config.max_connections)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def via_raw() -> object:
                async with session.post(url, json=raw_body) as response:
                    return await response.read()

            print(f"upstream latency {LATENCY_MS} ms; ideal RPS = 50 x concurrency")
            print(f"median of {rounds} rounds, {per_worker} calls per worker per round")
            print("conc.   raw RPS  prov RPS  ratio  raw p50 prov p50  raw p99 prov p99 (ms)")
            for concurrency in CONCURRENCY:
                await timed(via_raw, concurrency, 3)  # warm up: open the connections
                await timed(via_provider, concurrency, 3)
                raw, prov = [], []
                for _ in range(rounds):
                    raw.append(await timed(via_raw, concurrency, per_worker))
                    prov.append(await timed(via_provider, concurrency, per_worker))
                report(concurrency, raw, prov)
        await provider.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls-per-worker", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.calls_per_worker, args.rounds))
    else:
        asyncio.run(main(args.calls_per_worker, args.rounds))

"""Pipeline overhead per call: ``Tether.run`` vs calling the provider's model directly.

Both sides use the scripted provider (instant replies, no guards), run alternately in rounds in
one process so machine noise hits both alike. Prints the added time per call and the ratio.
Target: added <= 300 us per call.

    python bench/sdk_overhead.py [--calls 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from tether import Tether
from tether.config import parse_config
from tether.providers.base import CallContext
from tether.providers.scripted import Reply, ScriptedProvider
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest

CONFIG = """\
providers:
  bench: {kind: scripted}
features:
  echo:
    prompt: {system: "You are terse.", template: "{{ message }}"}
    model: bench:m
    on_failure: {respond: "unavailable"}
"""


async def direct(provider: ScriptedProvider, calls: int) -> float:
    model = provider.model("m")
    start = time.perf_counter()
    for _ in range(calls):
        request = ModelRequest([Message("system", "You are terse."), Message("user", "hello")])
        await model.complete(request, CallContext(Trace("echo")))
    return time.perf_counter() - start


async def through_tether(tether: Tether, calls: int) -> float:
    variables = {"message": "hello"}
    start = time.perf_counter()
    for _ in range(calls):
        await tether.run("echo", variables)
    return time.perf_counter() - start


async def main(calls: int, rounds: int) -> None:
    provider = ScriptedProvider([Reply("ok")], name="bench")
    tether = Tether(parse_config(CONFIG, "bench.yaml", {}), providers={"bench": provider})
    await through_tether(tether, 200)  # warm up: compile templates, build chains
    await direct(provider, 200)
    direct_us, tether_us = [], []
    for _ in range(rounds):
        direct_us.append(await direct(provider, calls) / calls * 1e6)
        tether_us.append(await through_tether(tether, calls) / calls * 1e6)
    d, t = statistics.median(direct_us), statistics.median(tether_us)
    print(f"calls per side: {calls} x {rounds} rounds (median of rounds)")
    print(f"direct provider call : {d:8.1f} us/call")
    print(f"through tether.run   : {t:8.1f} us/call")
    print(f"added by the pipeline: {t - d:8.1f} us/call  (target <= 300 us)")
    print(f"ratio tether/direct  : {t / d:8.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))

"""Replicas on shared state: how RPS grows from 1 to 2 to 3 ``tether serve`` replicas that share
one Redis (state) and one PostgreSQL (store), and what budgets + rate limits on Redis add to a
call against the same checks on the in-process backend. One run, side by side, on the mock
upstream (``FaultyUpstream`` with a fixed latency, or one spread by ``--latency-jitter``).

Every tether under test has the same feature: a user budget and a feature budget (reserved
before each call and settled after it), rate limits per key and per user (set high enough that
nothing is refused: the bench measures the checks, not refusals), a scoped API key. Calls name a
user, so every call goes through every check.

Scaling: ``--concurrency`` connections in total, split evenly over the replicas (one ``wrk`` per
replica, run at the same time); the RPS is the sum. Targets: 2 replicas >= 1.7x of 1.
Added latency: one connection (``wrk -c 1``) against a single replica, ``redis`` vs ``memory``
(the same config with ``state.backend: memory``); ``none`` (no budgets, no limits) is printed
for reference. Targets: redis - memory <= 0.5 ms at p50, <= 1.5 ms at p99.

Each measurement runs ``--rounds`` times, the targets alternating inside a round so drift on a
noisy machine hits all of them alike; the medians are printed, then the ratios. The load
generator, the mock upstream, Redis and PostgreSQL share the machine's cores with the replicas:
the output says how many there are, and ratios are what to read, not absolute numbers.

It also counts the Redis work one call costs (``INFO commandstats`` around sequential calls):
the scripts and the commands they run (a replica sends what one loop turn asks for as one
pipeline: a call waits for one batch, its rate-limit take, budget reservation and breaker read;
its settle, tpm correction and breaker bookkeeping are written behind, see docs/budgets.md);
what one round trip costs on this machine, back to back and after a call's idle wait on its
upstream (the CPU wakeup included: the added latency is about one such round trip); and, per
replica count, where the machine's cores went (``/proc``).

Needs ``wrk`` (``apt-get install wrk``), ``redis-server`` (the bench starts one of its own on a
free port, so other users of the machine's Redis neither disturb nor see the run; or pass
``--redis-url``) and PostgreSQL (``--postgres-url``; a fresh schema, dropped at the end).

With a fixed upstream latency, the calls one Redis batch answered together go on in step
(a convoy): they reach the upstream together, come back together 20 ms later and queue for the
replica's one core together, so a replica on Redis idles part of the time while its calls wait
(the bench's cores line shows it; in-process state has no batch and no convoy). A real upstream
is not that regular: ``--latency-jitter 0.5`` spreads each answer's latency uniformly over
+-50% and the convoys dissolve.

    python bench/replicas.py [--seconds 5] [--rounds 3] [--concurrency 48] [--latency-ms 20]
                             [--latency-jitter 0]
                             [--redis-url URL] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import httpx
import redis
import redis.asyncio as aioredis
from crash import drop_schema, postgres_schema
from gateway_overhead import Run, free_port, parse_wrk, stop, wait_ready

from tether.testing.upstream import FaultyUpstream

USER = "bench-user"
LUA = """\
wrk.method = "POST"
wrk.body = '{"model":"bench","user":"%s","messages":[{"role":"user","content":"Say hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""
CHECKS = """\
    budgets:
      user: {cost_usd: 1000000, per: day}
      feature: {cost_usd: 1000000, per: month}
    rate_limits:
      key: {rpm: 100000000}
      user: {rpm: 100000000, tpm: 1000000000}
"""
CONFIG = """\
providers:
  mock: {{kind: openai, base_url: "{upstream}", api_key: mock}}
state: {{backend: {backend}, url: "{redis}", prefix: "{prefix}"}}
store: {{url: "{store}"}}
features:
  bench:
    model: mock:gpt-4o-mini
    max_tokens: 64
    retry: {{max_attempts: 1}}
    on_failure: {{respond: unavailable}}
{checks}"""


@dataclass(frozen=True)
class Tether:
    """A running replica: its process and the chat completions URL."""

    proc: subprocess.Popen[bytes]
    url: str


def write_config(workdir: Path, name: str, backend: str, args: argparse.Namespace) -> Path:
    config = workdir / f"{name}.yaml"
    checks = "" if name == "none" else CHECKS
    config.write_text(
        CONFIG.format(
            upstream=args.upstream_url,
            backend=backend,
            redis=args.redis_url,
            prefix=args.prefix,
            store=args.store_url,
            checks=checks,
        )
    )
    return config


def create_key(config: Path) -> str:
    """A key scoped to the feature, as production callers use (and the ``key`` limit needs)."""
    created = subprocess.run(
        [sys.executable, "-m", "tether", "keys", "create", "-c", str(config), "-s", "bench"],
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.split()[0]


def start(config: Path) -> Tether:
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tether", "serve", "--config", str(config)),
            *("--port", str(port), "--workers", "1", "--log-level", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}/readyz", proc, f"tether serve ({config.name})")
    return Tether(proc, f"http://127.0.0.1:{port}/v1/chat/completions")


def wrk_many(urls: list[str], concurrency: int, seconds: float, script: Path) -> Run:
    """One ``wrk`` per URL at the same time, ``concurrency`` connections split over them: the
    summed RPS, the worst p50 and p99, the summed errors."""
    per = max(1, concurrency // len(urls))
    procs = [
        subprocess.Popen(
            [
                *("wrk", "-t", "1", "-c", str(per), "-d", f"{max(1, round(seconds))}s"),
                *("--latency", "-s", str(script), url),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    runs = [parse_wrk(proc.communicate()[0]) for proc in procs]
    return Run(
        sum(r.rps for r in runs),
        max(r.p50_ms for r in runs),
        max(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
    )


def scaling(replicas: list[Tether], args: argparse.Namespace, script: Path) -> dict[int, float]:
    """RPS on 1, 2 and 3 replicas (medians over the rounds), the counts alternating; and where
    the machine's cores went during each."""
    counts = range(1, len(replicas) + 1)
    for n in counts:  # warm up every replica's connections, pools and caches
        wrk_many([t.url for t in replicas[:n]], args.concurrency, 1.0, script)
    rounds: list[dict[int, Run]] = []
    cores: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    for _ in range(args.rounds):
        one: dict[int, Run] = {}
        for n in counts:
            meter = CpuMeter(replicas, args.redis_pid)
            one[n] = wrk_many([t.url for t in replicas[:n]], args.concurrency, args.seconds, script)
            cores[n].append(meter.cores())
        rounds.append(one)
    busy = {n: {g: median(c[g] for c in cores[n]) for g in cores[n][0]} for n in counts}
    print(f"\nscaling: {args.concurrency} connections in total, split over the replicas")
    print(
        f"{'replicas':>8} {'RPS':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'x 1':>6} "
        f"{'RPS per replica core':>21}"
    )
    medians = {n: median_run([r[n] for r in rounds]) for n in counts}
    ratios = {n: median(r[n].rps / r[1].rps for r in rounds) for n in counts}
    if any(run.errors for run in medians.values()):
        print("WARNING: some calls failed: these numbers do not compare")
    for n, run in medians.items():
        ratio = ratios[n]
        per_core = run.rps / busy[n]["replicas"] if busy[n]["replicas"] else 0.0
        print(
            f"{n:>8} {run.rps:>9.0f} {run.p50_ms:>8.2f} {run.p99_ms:>8.2f} {run.errors:>6} "
            f"{ratio:>5.2f}x {per_core:>21.0f}"
        )
    print(
        f"cores busy (of {os.cpu_count()}), median over the rounds (if RPS per replica core "
        "stays flat, what limits RPS is the cores the replicas get, not shared state):"
    )
    for n in counts:
        print(f"{n:>8}  " + ", ".join(f"{g} {v:.2f}" for g, v in busy[n].items()))
    return ratios


class CpuMeter:
    """CPU seconds per wall second (cores busy) from ``/proc``, per group of processes: the
    replicas, wrk (this process's reaped children), the mock upstream (this process), Redis,
    PostgreSQL (every ``postgres`` process) and the rest of the machine."""

    def __init__(self, replicas: list[Tether], redis_pid: int | None) -> None:
        self.replicas = [t.proc.pid for t in replicas]
        self.redis_pid = redis_pid
        self.start = self.snapshot()

    def snapshot(self) -> dict[str, float]:
        own, children = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return {
            "wall": time.monotonic(),
            "replicas": sum(proc_cpu(pid) for pid in self.replicas),
            "wrk": children.ru_utime + children.ru_stime,
            "upstream": own.ru_utime + own.ru_stime,
            "redis": proc_cpu(self.redis_pid) if self.redis_pid else 0.0,
            "postgres": sum(proc_cpu(pid) for pid in named("postgres")),
            "machine": machine_busy(),
        }

    def cores(self) -> dict[str, float]:
        end = self.snapshot()
        wall = end["wall"] - self.start["wall"]
        used = {k: (end[k] - self.start[k]) / wall for k in end if k != "wall"}
        known = sum(v for k, v in used.items() if k != "machine")
        used["other"] = max(0.0, used.pop("machine") - known)
        return used


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def named(comm: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    pids.append(int(entry.name))
            except OSError:
                continue  # it exited meanwhile
    return pids


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (``/proc/stat``, idle and iowait out)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def added_latency(targets: dict[str, Tether], args: argparse.Namespace, script: Path) -> None:
    """One connection per target, the targets alternating within each round."""
    for tether in targets.values():
        wrk_many([tether.url], 1, 1.0, script)
    rounds = [
        {name: wrk_many([t.url], 1, args.seconds, script) for name, t in targets.items()}
        for _ in range(args.rounds)
    ]
    print("\nper-call latency, 1 connection, 1 replica")
    print(f"{'state':>8} {'RPS':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name in targets:
        run = median_run([r[name] for r in rounds])
        print(f"{name:>8} {run.rps:>9.0f} {run.p50_ms:>8.2f} {run.p99_ms:>8.2f} {run.errors:>6}")
    for base in ("memory", "none"):
        p50 = [r["redis"].p50_ms - r[base].p50_ms for r in rounds]
        p99 = [r["redis"].p99_ms - r[base].p99_ms for r in rounds]
        print(
            f"  redis over {base:<6}: p50 {median(p50):+.2f} ms, p99 {median(p99):+.2f} ms "
            f"(rounds p50: {', '.join(f'{x:+.2f}' for x in p50)}; "
            f"p99: {', '.join(f'{x:+.2f}' for x in p99)})"
        )
    print("  target: redis over memory <= +0.50 ms p50, <= +1.50 ms p99")


def median_run(runs: list[Run]) -> Run:
    return Run(
        median(r.rps for r in runs),
        median(r.p50_ms for r in runs),
        median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
    )


@contextmanager
def fresh_store(base: str) -> Iterator[str]:
    url, schema = postgres_schema(base)
    try:
        yield url
    finally:
        drop_schema(base, schema)


@contextmanager
def redis_server(url: str | None) -> Iterator[tuple[str, int | None]]:
    """``url`` when given (it must answer), else a redis-server of our own on a free port:
    the URL and the server's pid (None: not ours)."""
    proc = None
    if url is None:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed: apt-get install redis-server")
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        proc = subprocess.Popen(
            [*("redis-server", "--bind", "127.0.0.1", "--port", str(port)), "--save", ""],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        wait_for_redis(url)
        yield url, proc.pid if proc is not None else None
    finally:
        if proc is not None:
            stop(proc)


def wait_for_redis(url: str) -> None:
    deadline = time.monotonic() + 10
    client = redis.Redis.from_url(url)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError as exc:
                if time.monotonic() > deadline:
                    raise SystemExit(f"Redis at {url} does not answer ({exc})") from None
                time.sleep(0.1)
    finally:
        client.close()


def commands_per_call(url: str, tether: Tether, key: str, calls: int = 100) -> str:
    """The Redis commands one call costs, from ``INFO commandstats``
    around ``calls`` sequential calls."""
    client = redis.Redis.from_url(url)
    body = {"model": "bench", "user": USER, "messages": [{"role": "user", "content": "Say hi"}]}
    try:
        before = client.info("commandstats")
        with httpx.Client(headers={"authorization": f"Bearer {key}"}, timeout=30) as http:
            for _ in range(calls):
                http.post(tether.url, json=body).raise_for_status()
        after = client.info("commandstats")
    finally:
        client.close()
    counts = {
        name.removeprefix("cmdstat_"): (stats["calls"] - before.get(name, {"calls": 0})["calls"])
        for name, stats in after.items()
        if name != "cmdstat_info"
    }
    used = {name: n / calls for name, n in sorted(counts.items()) if n}
    listed = ", ".join(f"{name} {n:.1f}" for name, n in used.items())
    scripts = used.get("evalsha", 0.0) + used.get("eval", 0.0)
    return (
        f"Redis per call: {scripts:.1f} Lua scripts (EVALSHA; the call waits for one batch "
        f"of them, the rest is written behind), {sum(used.values()):.1f} commands executed in "
        f"all, inside the scripts included ({listed})"
    )


def round_trip(url: str, gap_s: float, calls: int = 200) -> str:
    """What one Redis script round trip costs this machine, from an asyncio client like the
    replicas': back to back, and after ``gap_s`` idle (a call waiting on its upstream), where
    the CPU wakeup is part of it. The batch a call waits for costs about that."""

    async def measure() -> tuple[float, float]:
        client = aioredis.Redis.from_url(url)
        script = client.register_script("return redis.call('INCR', KEYS[1])")
        key = f"bench:rtt:{secrets.token_hex(4)}"
        try:
            await script(keys=[key])
            p50s = []
            for gap in (0.0, gap_s):
                times = []
                for _ in range(calls):
                    if gap:
                        await asyncio.sleep(gap)
                    start = time.perf_counter()
                    await script(keys=[key])
                    times.append(time.perf_counter() - start)
                p50s.append(median(times) * 1e6)
            await client.delete(key)
        finally:
            await client.aclose()
        return p50s[0], p50s[1]

    busy, idle = asyncio.run(measure())
    return (
        f"one Lua script round trip from asyncio (p50): {busy:.0f} us back to back, {idle:.0f} "
        f"us after {gap_s * 1000:.0f} ms idle (about what the batch a call waits for costs here)"
    )


def forget_state(url: str, prefix: str) -> None:
    """Delete the run's keys from Redis (budgets and buckets would otherwise live a day)."""
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target")
    parser.add_argument("--concurrency", type=int, default=48, help="connections in total")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="mock upstream latency")
    parser.add_argument(
        "--latency-jitter",
        type=float,
        default=0.0,
        help="spread the latency uniformly over +- this fraction (default 0: fixed)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TETHER_BENCH_REDIS_URL"),
        help="a Redis to use (default: a redis-server of the bench's own on a free port)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TETHER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"),
    )
    args = parser.parse_args()
    if not 0.0 <= args.latency_jitter < 1.0:
        parser.error("--latency-jitter is a fraction in [0, 1)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    args.prefix = f"tether-bench-{secrets.token_hex(4)}:"
    with (
        tempfile.TemporaryDirectory() as tmp,
        FaultyUpstream(
            text="hi", latency_ms=args.latency_ms, latency_jitter=args.latency_jitter
        ) as upstream,
        fresh_store(args.postgres_url) as store_url,
        redis_server(args.redis_url) as (args.redis_url, args.redis_pid),
    ):
        args.upstream_url, args.store_url = upstream.base_url, store_url
        try:
            run(Path(tmp), args)
        finally:
            forget_state(args.redis_url, args.prefix)


def run(workdir: Path, args: argparse.Namespace) -> None:
    configs = {
        name: write_config(workdir, name, backend, args)
        for name, backend in (("redis", "redis"), ("memory", "memory"), ("none", "memory"))
    }
    replicas: list[Tether] = []
    others: dict[str, Tether] = {}
    try:
        replicas.append(start(configs["redis"]))  # the first one migrates the store
        key = create_key(configs["redis"])
        script = workdir / "bench.lua"
        script.write_text(LUA % (USER, key))
        replicas += [start(configs["redis"]) for _ in range(2)]
        others = {name: start(configs[name]) for name in ("memory", "none")}
        print(
            f"mock upstream latency {args.latency_ms:.0f} ms +-{args.latency_jitter:.0%}; "
            f"{args.rounds} rounds of "
            f"{args.seconds:.0f} s per target; state on Redis, store on PostgreSQL; "
            f"{os.cpu_count()} cores shared by the load generator (wrk), the replicas, the mock "
            "upstream, Redis and PostgreSQL: read the ratios, not the absolute numbers"
        )
        ratios = scaling(replicas, args, script)
        added_latency({"redis": replicas[0], **others}, args, script)
        print("  " + commands_per_call(args.redis_url, replicas[0], key))
        print("  " + round_trip(args.redis_url, args.latency_ms / 1000.0))
        print(
            f"\nRPS 2 replicas / 1: {ratios[2]:.2f}x (target >= 1.70x); 3 / 1: {ratios[3]:.2f}x "
            "(medians of the per-round ratios)"
        )
    finally:
        for tether in [*replicas, *others.values()]:
            stop(tether.proc)


if __name__ == "__main__":
    main()

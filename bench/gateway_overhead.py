"""Gateway overhead: the same fixed-latency mock upstream called directly and through
``tether serve``, at concurrency 1, 4, 16 and 64, measured side by side in one run.

Load comes from ``wrk`` (a C load generator: a Python one would saturate these 2 cores first),
so install it first: ``apt-get install wrk``. tether is called with a scoped API key, as in
production. Prints p50/p99 added latency and the RPS ratio.
Targets: p99 added <= 5 ms at concurrency 16.

Two tethers run side by side: ``default`` (the default provider transport, aiohttp) and
``lean`` (``providers.mock.transport: lean``, tether's own HTTP/1.1 client); the last lines
print p99 added at concurrency 16 and RPS over direct at 64 for each. With ``--journal-off``, a
third tether (default transport, ``store.journal: off``: no crash journal appending every trace
to a local file before the response leaves) runs as ``jrnl-off``, with the on/off RPS ratio.

With ``--litellm PATH`` (the ``litellm`` executable of a separate virtualenv holding
``litellm[proxy]``), LiteLLM's proxy is pointed at the same mock with 2 workers and measured in
the same run; the script then prints tether's RPS against LiteLLM's (target >= 5x at 64).

Each level runs ``--rounds`` times with the targets alternating inside a round, so drift on a
noisy machine hits all of them alike; the medians are printed, and the p99 added in each round.

    python bench/gateway_overhead.py [--latency-ms 20] [--seconds 5] [--rounds 3] [--workers 1]
                                     [--concurrency 1 4 16 64] [--journal-off] [--litellm PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import httpx

from tether.testing.upstream import FaultyUpstream

CONCURRENCY = (1, 4, 16, 64)
#: The tethers compared, one per provider transport (``providers.NAME.transport``).
TRANSPORTS = ("default", "lean")
LUA = """\
wrk.method = "POST"
wrk.body = '{"model":"%s","messages":[{"role":"user","content":"Say hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""
LITELLM_KEY = "sk-bench-key"


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def to_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


@dataclass(frozen=True)
class Target:
    """An endpoint under load: its URL, the model field to send and the bearer key."""

    url: str
    model: str
    key: str = "none"


def wrk(target: Target, concurrency: int, seconds: float, workdir: Path) -> Run:
    script = workdir / f"{target.model}-{target.key[:12]}.lua"
    script.write_text(LUA % (target.model, target.key))
    threads = min(concurrency, 2)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            target.url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> Run:
    """A ``wrk --latency`` report as a Run (errors: non-2xx answers and socket errors)."""
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    if errs:
        errors += sum(int(g) for g in errs.groups())
    return Run(rps, p50, p99, errors)


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_tether(
    upstream_url: str, workdir: Path, workers: int, transport: str, journal: bool = True
) -> tuple[subprocess.Popen[bytes], Target]:
    workdir = workdir / f"{transport}-journal-{'on' if journal else 'off'}"
    workdir.mkdir()
    config = workdir / "tether.yaml"
    config.write_text(
        "providers:\n"
        f"  mock: {{kind: openai, base_url: '{upstream_url}', api_key: mock, "
        f"transport: {transport}}}\n"
        "features:\n"
        "  bench:\n    model: mock:gpt-4o-mini\n    on_failure: {respond: unavailable}\n"
        f"store: {{url: 'sqlite:///{workdir}/traces.db', journal: {'on' if journal else 'off'}}}\n"
    )
    created = subprocess.run(  # callers authenticate with a scoped key, as in production
        [sys.executable, "-m", "tether", "keys", "create", "-c", str(config), "-s", "bench"],
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.split()[0]
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(f"http://127.0.0.1:{port}/readyz", proc, "tether serve")
    return proc, Target(f"http://127.0.0.1:{port}/v1/chat/completions", "bench", key)


def start_litellm(
    binary: str, upstream_url: str, workdir: Path
) -> tuple[subprocess.Popen[bytes], Target]:
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n"
        f"      model: openai/gpt-4o-mini\n      api_base: {upstream_url}\n      api_key: mock\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--config", str(config), "--port", str(port), "--num_workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    wait_ready(f"http://127.0.0.1:{port}/health/liveliness", proc, "litellm")
    return proc, Target(f"http://127.0.0.1:{port}/v1/chat/completions", "bench", LITELLM_KEY)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per target and level")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--litellm", help="path to the litellm executable (separate venv)")
    parser.add_argument(
        "--journal-off", action="store_true", help="add a tether with store.journal: off"
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="*", default=list(CONCURRENCY), help="levels to run"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with (
        tempfile.TemporaryDirectory() as tmp,
        FaultyUpstream(text="hi", latency_ms=args.latency_ms) as upstream,
    ):
        workdir = Path(tmp)
        targets = {"direct": Target(f"{upstream.base_url}/chat/completions", "gpt-4o-mini")}
        procs = []
        for transport in TRANSPORTS:
            proc, targets[transport] = start_tether(
                upstream.base_url, workdir, args.workers, transport
            )
            procs.append(proc)
        if args.journal_off:
            proc, targets["jrnl-off"] = start_tether(
                upstream.base_url, workdir, args.workers, "default", journal=False
            )
            procs.append(proc)
        if args.litellm:
            proc, targets["litellm"] = start_litellm(args.litellm, upstream.base_url, workdir)
            procs.append(proc)
        try:
            report(targets, args, workdir)
        finally:
            for proc in procs:
                stop(proc)


def report(targets: dict[str, Target], args: argparse.Namespace, workdir: Path) -> None:
    print(
        f"mock upstream latency {args.latency_ms:.0f} ms, {args.rounds} rounds of "
        f"{args.seconds:.0f} s per target and level (targets alternate within a round), "
        f"tether workers {args.workers}, load from wrk"
    )
    print(f"{'conc':>4} {'target':>8} {'RPS':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    levels: dict[int, list[dict[str, Run]]] = {}
    for concurrency in args.concurrency:
        for target in targets.values():
            wrk(target, concurrency, 1.0, workdir)  # warm up connections and caches
        rounds: list[dict[str, Run]] = []
        for _ in range(args.rounds):
            rounds.append(
                {n: wrk(t, concurrency, args.seconds, workdir) for n, t in targets.items()}
            )
        for name in targets:
            runs = [r[name] for r in rounds]
            print(
                f"{concurrency:>4} {name:>8} {median(r.rps for r in runs):>9.0f} "
                f"{median(r.p50_ms for r in runs):>8.2f} {median(r.p99_ms for r in runs):>8.2f} "
                f"{sum(r.errors for r in runs):>6}"
            )
        print(summary(rounds))
        levels[concurrency] = rounds
    print(side_by_side(levels))


def added(rounds: list[dict[str, Run]], name: str) -> tuple[float, float, list[float]]:
    """Median p50 and p99 added by target ``name`` over direct, and the p99 added per round."""
    per_round = [r[name].p99_ms - r["direct"].p99_ms for r in rounds]
    p50 = median(r[name].p50_ms - r["direct"].p50_ms for r in rounds)
    return p50, median(per_round), per_round


def summary(rounds: list[dict[str, Run]]) -> str:
    """Each tether's added latency and RPS ratio: per round (side by side), then the median."""
    failed = sum(r.errors for one in rounds for r in one.values())
    lines = []
    for name in (n for n in rounds[0] if n not in ("direct", "litellm")):
        p50, p99, per_round = added(rounds, name)
        lines.append(
            f"     added by {name:<8}: p50 {p50:+.2f} ms, p99 {p99:+.2f} ms "
            f"(rounds: {', '.join(f'{x:+.2f}' for x in per_round)}); "
            f"RPS {name}/direct {median(r[name].rps / r['direct'].rps for r in rounds):.2f}"
        )
    if "jrnl-off" in rounds[0]:
        on_off = [r["default"].rps / r["jrnl-off"].rps for r in rounds]
        lines.append(
            f"     RPS journal on/off {median(on_off):.2f} "
            f"(rounds: {', '.join(f'{x:.2f}' for x in on_off)})"
        )
    if "litellm" in rounds[0]:
        ratio = median(r["default"].rps / r["litellm"].rps for r in rounds)
        lines.append(f"     RPS tether/litellm {ratio:.2f}x")
    if failed:
        lines.append(f"     WARNING: {failed} failed requests: these numbers do not compare")
    return "\n".join(lines)


def side_by_side(levels: dict[int, list[dict[str, Run]]]) -> str:
    """The two transports on the headline numbers: p99 added at 16, RPS over direct at 64."""
    lines = [f"{'transport':>9}  {'p99 added @16':>13}  {'RPS/direct @64':>14}"]
    for name in TRANSPORTS:
        p99 = f"{added(levels[16], name)[1]:+.2f} ms" if 16 in levels else "-"
        rps = "-"
        if 64 in levels:
            rps = f"{median(r[name].rps / r['direct'].rps for r in levels[64]):.2f}x"
        lines.append(f"{name:>9}  {p99:>13}  {rps:>14}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

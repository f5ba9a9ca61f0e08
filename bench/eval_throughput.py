"""Evaluation throughput: ``tether eval run`` and ``promptfoo eval`` on the same dataset against
the same fixed-latency mock upstream, at the same concurrency, measured side by side in one run;
then the peak RSS of ``tether eval run`` over a large dataset.

The dataset is a promptfoo config (``prompts``, ``providers``, ``tests: file://cases.csv`` with
one ``__expected`` assert a row, a tenth of them failing), which promptfoo runs as it is and
tether reads as a dataset. Both call the mock upstream directly, one HTTP call a case: promptfoo
through its ``openai:chat`` provider (``apiBaseUrl``), tether through the feature's full pipeline
(trace written, failure path armed), so the two do the same work on the wire and the difference
is the evaluators themselves. (Pointing promptfoo at ``tether serve`` instead would add the
gateway's own overhead to promptfoo's side and measure the two stacked, not side by side.)
Both store every result (tether: its store; promptfoo: its database), and both must report the
same number of passed cases.

Each tool is timed as a whole command (start-up included, as a CI job sees it), ``--rounds``
times alternating, and the medians are printed with the ratio. Targets: tether >= 2x promptfoo's
cases/s at concurrency 32; peak RSS < 400 MB for 100,000 cases (the child's own maximum resident
set, from ``wait4``).

promptfoo comes from ``tools/promptfoo`` (``npm ci --prefix tools/promptfoo``); without it only
tether is measured. It runs offline (no telemetry, update check or sharing; its home in a temp
folder).

    python bench/eval_throughput.py [--cases 2000] [--concurrency 32] [--latency-ms 20]
                                    [--rounds 2] [--rss-cases 100000] [--no-promptfoo]
                                    [--profile] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from tether.testing.promptfoo import offline_env
from tether.testing.upstream import FaultyUpstream

ROOT = Path(__file__).resolve().parents[1]
PROMPTFOO = ROOT / "tools" / "promptfoo" / "node_modules" / ".bin" / "promptfoo"
PROMPTFOO_FAILED = 100  # promptfoo's exit code when some test failed
FAIL_EVERY = 10  # one row in ten expects what the answer does not say


def say(body: dict[str, Any]) -> str:
    """The mock's answer: what follows "Say: " in the last user message."""
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    text = users[-1].get("content") if users else ""
    return str(text or "").split("Say: ", 1)[-1]


def write_dataset(folder: Path, cases: int, upstream_url: str) -> Path:
    """``folder/promptfooconfig.yaml`` with ``cases`` CSV rows; returns the config's path."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "cases.csv").open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["reply", "__expected1"])
        for i in range(cases):
            expect = f"order {i + 1}" if i % FAIL_EVERY == 0 else f"order {i}"
            rows.writerow([f"Your order {i} has shipped.", f"contains: {expect}"])
    config = folder / "promptfooconfig.yaml"
    config.write_text(
        'prompts: ["Say: {{ reply }}"]\n'
        "providers:\n"
        "  - id: openai:chat:gpt-4o-mini\n"
        f"    config: {{apiBaseUrl: '{upstream_url}', apiKey: mock, temperature: 0}}\n"
        "tests: file://cases.csv\n"
    )
    return config


def write_tether_config(folder: Path, upstream_url: str) -> Path:
    config = folder / "tether.yaml"
    config.write_text(
        "providers:\n"
        f"  mock: {{kind: openai, base_url: '{upstream_url}', api_key: mock}}\n"
        "features:\n"
        "  bench:\n"
        "    prompt: {template: 'Say: {{ reply }}'}\n"
        "    model: mock:gpt-4o-mini\n"
        "    retry: {max_attempts: 1}\n"
        "    on_failure: {respond: unavailable}\n"
        f"store: {{url: 'sqlite:///{folder}/tether.db'}}\n"
    )
    return config


@dataclass
class Run:
    seconds: float
    passed: int
    peak_rss_mb: float


@dataclass
class Done:
    code: int
    seconds: float
    peak_rss_mb: float
    out: str


def timed(command: list[str], env: dict[str, str] | None, cwd: Path, log: Path) -> Done:
    """Run ``command`` to its end (stdout in ``log``, stderr in ``log.err``): its exit code,
    wall seconds and the child's own peak RSS (``wait4``'s ``ru_maxrss``, KiB on Linux)."""
    with log.open("w") as out, log.with_suffix(".err").open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Done(proc.returncode, seconds, usage.ru_maxrss / 1024, log.read_text())


def run_tether(config: Path, dataset: Path, concurrency: int, log: Path, profile: bool) -> Run:
    prefix = [sys.executable]
    if profile:
        prefix += ["-m", "cProfile", "-o", str(log.with_suffix(".prof"))]
    command = [*prefix, "-m", "tether", "eval", "run", "bench", "--config", str(config)]
    command += ["--dataset", str(dataset), "--concurrency", str(concurrency), "--json"]
    done = timed(command, None, config.parent, log)
    if done.code != 0:
        raise SystemExit(f"tether eval run exited {done.code}: {log.with_suffix('.err')}")
    summary = json.loads(done.out)
    if profile:
        print_profile(log.with_suffix(".prof"))
    return Run(done.seconds, int(summary["passed"]), done.peak_rss_mb)


def print_profile(path: Path) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    print(f"\nwhere tether's time goes (cProfile of the main thread: {path})")
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats("tether/", 30)


def run_promptfoo(dataset: Path, concurrency: int, home: Path, log: Path) -> Run:
    command = [str(PROMPTFOO), "eval", "--config", str(dataset), "--no-cache", "--no-table"]
    command += ["--no-progress-bar", "--max-concurrency", str(concurrency)]
    done = timed(command, offline_env(home), dataset.parent, log)
    if done.code not in (0, PROMPTFOO_FAILED):
        raise SystemExit(f"promptfoo eval exited {done.code}: see {log}")
    found = re.search(r"([\d,]+) passed, \S+ ([\d,]+) failed, ([\d,]+) errors", done.out)
    counts = [int(n.replace(",", "")) for n in found.groups()] if found else []
    if not counts or counts[2]:
        raise SystemExit(f"promptfoo eval did not finish cleanly: see {log}")
    return Run(done.seconds, counts[0], done.peak_rss_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="rows for the throughput runs")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the mock's delay")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each tool, alternating")
    parser.add_argument("--rss-cases", type=int, default=100_000, help="0: skip the RSS run")
    parser.add_argument("--no-promptfoo", action="store_true", help="measure tether only")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile tether's first run (slows it)"
    )
    parser.add_argument("--keep", type=Path, help="keep datasets, stores and logs in this folder")
    args = parser.parse_args()
    use_promptfoo = not args.no_promptfoo and PROMPTFOO.exists() and shutil.which("node")
    if not args.no_promptfoo and not use_promptfoo:
        print(f"promptfoo not found at {PROMPTFOO} (npm ci --prefix tools/promptfoo): tether only")
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        with FaultyUpstream(latency_ms=args.latency_ms, respond=say) as upstream:
            throughput(args, work, upstream.base_url, bool(use_promptfoo))
        if args.rss_cases:
            with FaultyUpstream(respond=say) as upstream:
                peak_rss(args, work, upstream.base_url)


def throughput(args: argparse.Namespace, work: Path, upstream_url: str, promptfoo: bool) -> None:
    dataset = write_dataset(work / "throughput", args.cases, upstream_url)
    expected = args.cases - len(range(0, args.cases, FAIL_EVERY))
    runs: dict[str, list[Run]] = {"tether": [], "promptfoo": []}
    for n in range(args.rounds):
        folder = work / f"round-{n}"
        folder.mkdir()
        config = write_tether_config(folder, upstream_url)
        log = folder / "tether.log"
        runs["tether"].append(run_tether(config, dataset, args.concurrency, log, args.profile))
        args.profile = False
        if promptfoo:
            home = folder / "promptfoo-home"
            runs["promptfoo"].append(
                run_promptfoo(dataset, args.concurrency, home, folder / "promptfoo.log")
            )
    print(
        f"\n{args.cases} cases, concurrency {args.concurrency}, mock upstream "
        f"{args.latency_ms:g} ms, {args.rounds} rounds (medians; whole commands, start-up in)"
    )
    print(f"{'tool':<10} {'cases/s':>9} {'seconds':>8} {'passed':>7} {'peak RSS MB':>12}")
    rates: dict[str, float] = {}
    for tool, done in runs.items():
        if not done:
            continue
        seconds = median(r.seconds for r in done)
        rates[tool] = args.cases / seconds
        rss = max(r.peak_rss_mb for r in done)
        passed = {r.passed for r in done}
        print(f"{tool:<10} {rates[tool]:>9.1f} {seconds:>8.2f} {min(passed):>7} {rss:>12.0f}")
        if passed != {expected}:
            print(f"  !! {tool} passed {sorted(passed)} cases, expected {expected}")
    if "promptfoo" in rates:
        ratio = rates["tether"] / rates["promptfoo"]
        verdict = "meets" if ratio >= 2 else "MISSES"
        print(f"tether / promptfoo cases/s: {ratio:.2f}x ({verdict} the >= 2x target)")


def peak_rss(args: argparse.Namespace, work: Path, upstream_url: str) -> None:
    folder = work / "rss"
    dataset = write_dataset(folder, args.rss_cases, upstream_url)
    config = write_tether_config(folder, upstream_url)
    run = run_tether(config, dataset, args.concurrency, folder / "tether.log", profile=False)
    verdict = "meets" if run.peak_rss_mb < 400 else "MISSES"
    print(
        f"\npeak RSS of tether eval run over {args.rss_cases} cases (mock at 0 ms, concurrency "
        f"{args.concurrency}): {run.peak_rss_mb:.0f} MB ({verdict} the < 400 MB target); "
        f"{args.rss_cases / run.seconds:.0f} cases/s, {run.passed} passed"
    )


if __name__ == "__main__":
    main()

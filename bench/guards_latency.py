"""p50 / p99 latency of each built-in guard on a ~2 KB prompt, side by side.

Where a guard has a p50 target, the table shows it and the measured p50 as a fraction of it
(< 1 is within the target).

Usage: ``python bench/guards_latency.py [--runs 500] [--size 2048]``
"""

from __future__ import annotations

import argparse
import json
import time

from rich.console import Console
from rich.table import Table

from tether.config.guards import GuardSpec
from tether.guards.base import GuardContext
from tether.guards.evaluation import percentile
from tether.guards.registry import build_guard

PARAGRAPH = (
    "Hello team, I need help with my order from last week. The parcel was supposed to arrive "
    "on Tuesday but the tracking page still shows it in the warehouse. You can reach me at "
    "jane.doe@example.com or on +1 415 555 0100 during office hours. My previous orders always "
    "arrived on time, so I wonder what happened this time. Could you check with the carrier, "
    "and if it is lost, send a replacement rather than a refund? Thanks a lot for your help. "
)
SYSTEM = "You are ACME's support assistant. Answer politely, in at most three paragraphs."
SPECS: dict[str, dict[str, object]] = {
    "pii": {},
    "prompt_injection": {},
    "secrets": {},
    "system_prompt_leak": {"system_prompt": SYSTEM},
    "banned": {"keywords": ["refund fraud", "chargeback"], "regex": [r"\bkill\b"]},
    "topics": {"keywords": ["order", "parcel", "invoice"]},
    "max_length": {"max_chars": 8000},
    "json_schema": {"schema": {"type": "object"}},
}
P50_TARGET_MS = {"prompt_injection": 6.0}  # on 2,048 characters, a loaded 2-core machine


def prompt(size: int) -> str:
    text = PARAGRAPH * (size // len(PARAGRAPH) + 1)
    return text[:size]


def measure(name: str, options: dict[str, object], text: str, runs: int) -> list[float]:
    guard = build_guard(GuardSpec.model_validate({name: options}))
    ctx = GuardContext()
    guard.check(text, ctx)  # warm-up: lazy model load, regex caches
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        guard.check(text, ctx)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    text = prompt(args.size)
    results = {}
    for name, options in SPECS.items():
        times = measure(name, options, text, args.runs)
        results[name] = {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}
        if name in P50_TARGET_MS:
            results[name]["p50_target_ms"] = P50_TARGET_MS[name]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    table = Table(title=f"guard latency on a {len(text)}-character prompt, {args.runs} runs")
    for col in ("guard", "p50 ms", "p99 ms", "p50 target ms", "p50 / target"):
        table.add_column(col, justify="left" if col == "guard" else "right")
    for name, r in results.items():
        target = r.get("p50_target_ms")
        within = ("", "") if target is None else (f"{target:g}", f"{r['p50_ms'] / target:.2f}")
        table.add_row(name, f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", *within)
    Console().print(table)


if __name__ == "__main__":
    main()

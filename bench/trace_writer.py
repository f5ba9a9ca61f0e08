"""Trace writer: the previous implementation and the current one, side by side in one run.

* ``to_dict`` µs per trace: ``dataclasses.asdict`` (before) against the hand-written view;
* ``write_many`` µs per trace, called directly: SQLAlchemy ORM bulk insert after a ``jsonable``
  pass (before) against prebuilt tuples (``executemany`` on SQLite, ``COPY`` on PostgreSQL);
* the whole :class:`~tether.store.TraceWriter` as the gateway uses it: traces submitted as fast
  as the writer takes them (back-pressure included) and at a steady 3,000 traces/s, reporting
  traces/s and the event loop's stalls (a ticker task records the gap around 1 ms sleeps).
  ``null`` stores nothing (the machine's floor); ``before`` is the old ``to_dict`` and
  ``write_many`` in a worker thread; ``thread`` the new code in a thread; ``process`` the new
  code in the writer process (what ``Store.writer()`` picks).

Each measurement gets a fresh SQLite file (WAL) or PostgreSQL schema, pre-filled with 1,000
traces and analysed, so every variant starts from the same steady state. Targets: to_dict
< 10 µs for a typical trace, >= 10,000 traces/s through the writer on both databases.

    python bench/trace_writer.py [--traces 20000] [--pg postgresql://postgres@127.0.0.1/test]
                                 [--no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from tether.store import Store, StoreConfig, TraceWriter
from tether.store.rows import jsonable
from tether.store.schema import StepRow, TraceRow
from tether.telemetry.trace import Trace
from tether.types import Usage

SHAPES = {"1 attempt": (1, 0), "1 attempt + 2 events": (1, 2), "3 attempts + 5 events": (3, 5)}
WRITER_SHAPES = ("1 attempt", "1 attempt + 2 events")
PACED_RATE = 3000


# ---------------------------------------------------------------------------- the old code


class LegacyTrace(Trace):
    """A trace whose ``to_dict`` is the previous ``dataclasses.asdict`` implementation."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("t0")
        data["usage"] = self.usage.as_dict()
        for attempt, raw in zip(self.attempts, data["attempts"], strict=True):
            raw["usage"] = attempt.usage.as_dict()
            raw["duration_ms"] = round(attempt.duration_ms, 3)
        return data


def _clip(value: Any, width: int) -> str | None:
    return None if value is None else str(value)[:width]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _legacy_trace_row(data: dict[str, Any], written_at: datetime) -> dict[str, Any]:
    usage = data.get("usage") or {}
    return {
        "id": data["id"],
        "feature": _clip(data["feature"], 200),
        "variant": _clip(data.get("variant") or "default", 200),
        "user_id": _clip(data.get("user"), 200),
        "status": _clip(data.get("status") or "ok", 16),
        "degraded": bool(data.get("degraded")),
        "reason": _clip(data.get("reason"), 200),
        "model": _clip(data.get("model"), 200),
        "started_at": datetime.fromtimestamp(_num(data.get("started_at")), UTC),
        "latency_ms": _num(data.get("latency_ms")),
        "input_tokens": int(_num(usage.get("input_tokens"))),
        "output_tokens": int(_num(usage.get("output_tokens"))),
        "cost_usd": _num(data.get("cost_usd")),
        "output": data.get("output") if isinstance(data.get("output"), str) else None,
        "meta": data.get("metadata") if isinstance(data.get("metadata"), dict) else {},
        "data": {k: v for k, v in data.items() if k not in ("attempts", "events")},
        "written_at": written_at,
    }


def _legacy_step(step: dict[str, Any], kind: str) -> dict[str, Any]:
    usage = step.get("usage") or {}
    attempt = kind == "attempt"
    return {
        "kind": kind,
        "at_ms": _num(step.get("start_ms" if attempt else "at_ms")),
        "end_ms": _num(step.get("end_ms")) if attempt else None,
        "event": None if attempt else _clip(step.get("kind"), 64),
        "provider": _clip(step.get("provider"), 200),
        "model": _clip(step.get("model"), 200),
        "number": int(_num(step.get("number"))) if attempt else None,
        "chain_position": int(_num(step.get("chain_position"))) if attempt else None,
        "status": _clip(step.get("status"), 16),
        "error_class": _clip(step.get("error_class"), 200),
        "error": _clip(step.get("error"), 100_000),
        "status_code": step.get("status_code"),
        "ttft_ms": step.get("ttft_ms"),
        "input_tokens": int(_num(usage.get("input_tokens"))) if attempt else None,
        "output_tokens": int(_num(usage.get("output_tokens"))) if attempt else None,
        "cost_usd": _num(step.get("cost_usd")) if attempt else None,
        "streamed": bool(step.get("streamed")) if attempt else None,
        "data": step,
    }


class LegacyTraceStore:
    """The previous ``TraceStore.write_many``: ``jsonable`` over every trace, dict rows, ORM
    bulk inserts whose JSON columns are encoded by SQLAlchemy's bind processors."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int:
        written_at = datetime.now(UTC)
        unique: dict[str, dict[str, Any]] = {}
        for trace in traces:
            data = jsonable(trace)
            unique.setdefault(data["id"], data)
        rows = [_legacy_trace_row(data, written_at) for data in unique.values()]
        with Session(self._engine) as session, session.begin():
            known = set(session.scalars(select(TraceRow.id).where(TraceRow.id.in_(list(unique)))))
            fresh = [row for row in rows if row["id"] not in known]
            steps = []
            for row in fresh:
                data = unique[row["id"]]
                merged = [_legacy_step(a, "attempt") for a in data["attempts"]]
                merged += [_legacy_step(e, "event") for e in data["events"]]
                merged.sort(key=lambda step: step["at_ms"])
                for seq, step in enumerate(merged):
                    step.update(trace_id=row["id"], seq=seq)
                steps += merged
            if fresh:
                session.execute(insert(TraceRow), fresh)
            if steps:
                session.execute(insert(StepRow), steps)
        return len(fresh)


# ---------------------------------------------------------------------------- fixtures


def make_trace(attempts: int, events: int, cls: type[Trace] = Trace) -> Trace:
    """A finished gateway call: failed attempts falling back to a good one, guard verdicts."""
    trace = cls(feature="support-reply", user="user-42", metadata={"ticket": "T-1042"})
    for number in range(attempts):
        attempt = trace.start_attempt("openai:gpt-4o-mini", "openai")
        attempt.end_ms = attempt.start_ms + 180.25
        if number < attempts - 1:
            attempt.status, attempt.error_class, attempt.status_code = "error", "Timeout", 504
        else:
            attempt.usage, attempt.cost_usd, attempt.ttft_ms = Usage(412, 96), 1.2e-4, 88.5
    for number in range(events):
        trace.event(
            "guard",
            guard="pii_redact" if number % 2 else "prompt_injection",
            stage="input" if number % 2 else "output",
            passed=True,
            score=0.0123,
            action="allow",
            findings=[],
            latency_ms=0.412,
        )
    trace.status, trace.output, trace.model = "ok", "Your order ships tomorrow.", "gpt-4o-mini"
    trace.usage, trace.cost_usd, trace.latency_ms = Usage(412, 96), 1.2e-4, 190.5
    return trace


@contextmanager
def database(backend: str, pg_url: str) -> Iterator[Store]:
    """A fresh, migrated store pre-filled with 1,000 traces and analysed."""
    if backend == "sqlite":
        with (
            tempfile.TemporaryDirectory() as folder,
            Store.from_url(f"sqlite:///{Path(folder) / 'traces.db'}") as store,
        ):
            _prefill(store)
            yield store
        return
    schema = f"bench_{secrets.token_hex(4)}"
    url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    with Store.from_url(pg_url, migrate=False) as admin:
        with admin.engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            with Store.from_url(url.render_as_string(hide_password=False)) as store:
                _prefill(store)
                yield store
        finally:
            with admin.engine.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def _prefill(store: Store) -> None:
    store.traces.write_many([make_trace(1, 2).to_dict() for _ in range(1000)])
    with store.engine.begin() as connection:
        connection.execute(text("ANALYZE"))


# ---------------------------------------------------------------------------- measurements


def to_dict_us(traces: list[Trace], repeat: int = 5) -> float:
    """``to_dict`` of every trace, best of ``repeat`` rounds, in µs per trace."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        for trace in traces:
            trace.to_dict()
        best = min(best, time.perf_counter() - started)
    return best / len(traces) * 1e6


def bench_to_dict() -> None:
    print("to_dict, µs per trace (best of 5 over 2,000 traces)")
    print(f"  {'trace':<24}{'before':>10}{'after':>10}")
    for name, (attempts, events) in SHAPES.items():
        old = [make_trace(attempts, events, LegacyTrace) for _ in range(2000)]
        new = [make_trace(attempts, events) for _ in range(2000)]
        before, after = to_dict_us(old), to_dict_us(new)
        print(f"  {name:<24}{before:>10.1f}{after:>10.1f}")


def bench_write_many(backends: list[str], pg_url: str, count: int) -> None:
    print(f"\nwrite_many, µs per trace ({count:,} traces in batches of 200, called directly)")
    print(f"  {'database':<12}{'trace':<24}{'before':>10}{'after':>10}")
    for backend in backends:
        for name, (attempts, events) in SHAPES.items():
            results = []
            for legacy in (True, False):
                with database(backend, pg_url) as store:
                    target = LegacyTraceStore(store) if legacy else store.traces
                    dicts = [make_trace(attempts, events).to_dict() for _ in range(count)]
                    gc.collect()
                    started = time.perf_counter()
                    for start in range(0, count, 200):
                        target.write_many(dicts[start : start + 200])
                    results.append((time.perf_counter() - started) / count * 1e6)
            print(f"  {backend:<12}{name:<24}{results[0]:>10.1f}{results[1]:>10.1f}")


class Ticker:
    """Sleeps 1 ms in a loop and records how late each wake-up is (the loop's stalls)."""

    def __init__(self) -> None:
        self.lates: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _tick(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lates.append((time.perf_counter() - started) * 1000 - 1)

    def summary(self) -> str:
        lates = sorted(self.lates) or [0.0]
        p99 = lates[min(len(lates) - 1, int(len(lates) * 0.99))]
        return f"{lates[-1]:7.1f} {p99:6.1f}"


class NullStore:
    """Stores nothing: the floor of the stall measurement (queue, batching, a thread hop)."""

    def write_many(self, traces: Iterable[Mapping[str, Any]]) -> int:
        return len(list(traces))


async def closed(writer: TraceWriter, count: int, started: float) -> float:
    """Close the writer; traces/s from ``started`` until the last trace was stored (the
    writer process's own exit afterwards is not counted)."""
    closing = asyncio.get_running_loop().create_task(writer.aclose())
    while not closing.done():
        stats = writer.stats
        if stats.written + stats.duplicates + stats.failed >= count:
            break
        await asyncio.sleep(0.0005)
    elapsed = time.perf_counter() - started
    await closing
    return count / elapsed


async def flood(writer: TraceWriter, traces: list[Trace]) -> float:
    """Submit every trace as fast as the writer takes them; traces/s until all are stored."""
    started = time.perf_counter()
    for number, trace in enumerate(traces):
        await writer.write(trace)
        if number % 16 == 0:
            await asyncio.sleep(0)  # a gateway yields between requests
    return await closed(writer, len(traces), started)


async def paced(writer: TraceWriter, traces: list[Trace], rate: int) -> float:
    """Submit ``rate`` traces per second, a few every millisecond; achieved traces/s."""
    started = time.perf_counter()
    sent = 0
    while sent < len(traces):
        due = min(len(traces), int((time.perf_counter() - started) * rate) + 1)
        for trace in traces[sent:due]:
            await writer.write(trace)
        sent = max(sent, due)
        await asyncio.sleep(0.001)
    return await closed(writer, len(traces), started)


async def one_writer_run(
    store: Store, variant: str, shape: tuple[int, int], count: int, rate: int | None
) -> str:
    cls = LegacyTrace if variant == "before" else Trace
    traces = [make_trace(*shape, cls) for _ in range(count)]
    config = store.config
    if variant == "process":
        writer = store.writer(process=True)
    else:
        targets = {"null": NullStore(), "before": LegacyTraceStore(store), "thread": store.traces}
        writer = TraceWriter.from_config(targets[variant], config)
    started = time.perf_counter()
    await writer.start()
    start_s = time.perf_counter() - started
    gc.collect()
    async with Ticker() as ticker:
        achieved = await (flood(writer, traces) if rate is None else paced(writer, traces, rate))
    stats = writer.stats
    assert stats.written == count and stats.failed == 0, stats
    return f"{achieved:>9,.0f} {ticker.summary()} {stats.queue_full:>7} {start_s:>6.2f}"


def bench_writer(backends: list[str], pg_url: str, count: int) -> None:
    print(f"\nTraceWriter end to end ({count:,} traces; paced: {PACED_RATE:,}/s for 2 s)")
    print("  stall = how late a 1 ms sleep wakes up (ms); full = writes that waited for room")
    header = f"{'traces/s':>9} {'stall max':>7} {'p99':>6} {'full':>7} {'start':>6}"
    print(f"  {'database':<10}{'trace':<22}{'load':<7}{'variant':<9}{header}")
    for backend in backends:
        for name in WRITER_SHAPES:
            for load, rate in (("flood", None), ("paced", PACED_RATE)):
                n = count if rate is None else rate * 2
                for variant in ("null", "before", "thread", "process"):
                    with database(backend, pg_url) as store:
                        line = asyncio.run(one_writer_run(store, variant, SHAPES[name], n, rate))
                    print(f"  {backend:<10}{name:<22}{load:<7}{variant:<9}{line}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=20_000)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "TETHER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    logging.getLogger("tether.store.writer").setLevel(logging.ERROR)  # "queue full" is expected
    backends = ["sqlite"] if args.no_pg else ["sqlite", "postgresql"]
    defaults = StoreConfig()
    print(f"{os.cpu_count()} CPUs; batch {defaults.batch_size}, queue {defaults.queue_size:,}")
    bench_to_dict()
    bench_write_many(backends, args.pg, min(args.traces, 10_000))
    bench_writer(backends, args.pg, args.traces)


if __name__ == "__main__":
    main()

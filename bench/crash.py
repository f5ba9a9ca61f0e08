"""Crash durability: ``kill -9`` a loaded gateway and count the acknowledged traces it lost.

Each round starts ``tether serve`` (which stores what the previous round's crash left in the
trace journal), loads it with ``--requests`` calls at ``--concurrency`` from an async client
(a quarter of them streamed), SIGKILLs it at a random point of the load, and records the trace
id of every 200 the client got. After the last round a final start stores the last crash's
journal and stops gracefully. Then, per round: acknowledged traces, how many of them are stored,
lost; and an integrity check (``PRAGMA integrity_check`` on SQLite; duplicate ids and steps
without a trace on both).

On PostgreSQL each run uses a fresh schema of ``--postgres-url`` (dropped at the end).
``--journal off`` shows what the crash journal prevents.

    python bench/crash.py [--backend sqlite postgresql] [--requests 2000] [--concurrency 16]
                          [--rounds 3] [--journal on|off] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tether.store import Store
from tether.testing.upstream import FaultyUpstream

CONFIG = """\
providers:
  up: {{kind: openai, base_url: "{up}", api_key: k}}
features:
  chat:
    model: up:gpt-4o-mini
    on_failure: {{respond: "unavailable"}}
store:
  url: "{store}"
  journal: {journal}
"""


@dataclass
class Round:
    kill_at: int
    acknowledged: set[str] = field(default_factory=set)
    failed: int = 0
    seconds: float = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tether", "serve", "--config", str(config), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tether serve exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{root}/readyz", timeout=1).status_code == 200:
                return proc, root
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"tether serve did not become ready; see {log}")


async def load(
    root: str, proc: subprocess.Popen[bytes], requests: int, concurrency: int, one: Round
) -> None:
    """``requests`` calls from ``concurrency`` workers; SIGKILL once ``kill_at`` are answered."""
    sent = 0
    started = time.monotonic()

    async def call(client: httpx.AsyncClient, i: int) -> str | None:
        body = {"model": "chat", "messages": [{"role": "user", "content": f"question {i}"}]}
        if i % 4 == 3:
            async with client.stream(
                "POST", "/v1/chat/completions", json={**body, "stream": True}
            ) as response:
                whole = "".join([part async for part in response.aiter_text()])
                complete = "[DONE]" in whole
        else:
            response = await client.post("/v1/chat/completions", json=body)
            complete = True
        ok = response.status_code == 200 and complete
        return response.headers["x-tether-trace-id"] if ok else None

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests:
            i, sent = sent, sent + 1
            try:
                trace_id = await call(client, i)
            except httpx.HTTPError:
                one.failed += 1
                if proc.poll() is not None:
                    return  # killed: the rest would fail the same way
                continue
            if trace_id is None:
                one.failed += 1
                continue
            one.acknowledged.add(trace_id)
            if len(one.acknowledged) == one.kill_at:
                os.kill(proc.pid, signal.SIGKILL)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=root, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    one.seconds = time.monotonic() - started


def stored_ids(url: str) -> list[str]:
    with Store.from_url(url, migrate=False) as store, store.engine.connect() as connection:
        return list(connection.scalars(text("SELECT id FROM traces")))


def integrity(url: str) -> str:
    with Store.from_url(url, migrate=False) as store, store.engine.connect() as connection:
        parts = []
        sqlite_ok = True
        if store.engine.dialect.name == "sqlite":
            result = connection.scalar(text("PRAGMA integrity_check"))
            sqlite_ok = result == "ok"
            parts.append(f"PRAGMA integrity_check: {result}")
        duplicates = connection.scalar(
            text("SELECT count(*) FROM (SELECT id FROM traces GROUP BY id HAVING count(*) > 1) d")
        )
        orphans = connection.scalar(
            text(
                "SELECT count(*) FROM trace_steps s WHERE NOT EXISTS "
                "(SELECT 1 FROM traces t WHERE t.id = s.trace_id)"
            )
        )
        total = connection.scalar(text("SELECT count(*) FROM traces"))
        parts.append(f"{total} traces, {duplicates} duplicate ids, {orphans} orphan steps")
        ok = sqlite_ok and duplicates == 0 and orphans == 0
        return ("ok: " if ok else "FAILED: ") + "; ".join(parts)


def run(backend: str, url: str, args: argparse.Namespace, upstream: FaultyUpstream) -> bool:
    rng = random.Random(f"{backend}-{args.seed}")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "tether.yaml"
        config.write_text(CONFIG.format(up=upstream.base_url, store=url, journal=args.journal))
        log = Path(tmp) / "gateway.log"
        rounds: list[Round] = []
        proc, root = start(config, log)
        for _ in range(args.rounds):
            one = Round(kill_at=rng.randint(args.requests // 4, args.requests * 3 // 4))
            asyncio.run(load(root, proc, args.requests, args.concurrency, one))
            if proc.poll() is None:  # every request answered before the kill point
                proc.kill()
            proc.wait()
            rounds.append(one)
            proc, root = start(config, log)  # stores what the crash left in the journal
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        stored = set(stored_ids(url))
        print(f"\n{backend} (journal {args.journal}): {args.rounds} rounds, SIGKILL under load")
        print(f"{'round':>5} {'sent':>6} {'acked':>6} {'stored':>6} {'lost':>5} {'s':>6}")
        lost_total = 0
        for number, one in enumerate(rounds, 1):
            kept = len(one.acknowledged & stored)
            lost = len(one.acknowledged) - kept
            lost_total += lost
            sent = len(one.acknowledged) + one.failed
            print(
                f"{number:>5} {sent:>6} {len(one.acknowledged):>6} {kept:>6} {lost:>5} "
                f"{one.seconds:>6.1f}"
            )
        acked = set().union(*(one.acknowledged for one in rounds))
        print(f"  stored but never acknowledged (cut by the kill): {len(stored - acked)}")
        check = integrity(url)
        print(f"  integrity: {check}")
        return lost_total == 0 and check.startswith("ok")


def admin_connection(base: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the database ``base`` names (for schema DDL)."""
    parsed = make_url(base)
    return psycopg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password or None,
        dbname=parsed.database or "test",
        autocommit=True,
    )


def postgres_schema(base: str) -> tuple[str, str]:
    """A fresh schema on ``base``: (its URL, its name)."""
    schema = f"tether_crash_{secrets.token_hex(4)}"
    with admin_connection(base) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(base: str, schema: str) -> None:
    with admin_connection(base) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backend", nargs="*", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--requests", type=int, default=2000, help="calls per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--journal", choices=["on", "off"], default="on")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="mock upstream latency")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TETHER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"),
    )
    args = parser.parse_args()
    print(
        f"{args.requests} calls per round at concurrency {args.concurrency} (1 in 4 streamed), "
        f"killed (SIGKILL) after a random 25-75% of them were answered; upstream mock "
        f"{args.latency_ms:.0f} ms; default store settings (flush_interval_s 0.5)"
    )
    ok = True
    with FaultyUpstream(text="an answer", latency_ms=args.latency_ms) as upstream:
        for backend in args.backend:
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as data:
                    ok &= run(backend, f"sqlite:///{data}/traces.db", args, upstream)
                continue
            url, schema = postgres_schema(args.postgres_url)
            try:
                ok &= run(backend, url, args, upstream)
            finally:
                drop_schema(args.postgres_url, schema)
    print("\nresult:", "0 acknowledged traces lost, integrity ok" if ok else "FAILED")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""``tether demo``: an offline tour on the embedded model and a fault-injecting local upstream.

1. a feature answers on the local model (streamed);
2. its hosted upstream goes down (HTTP 503): the fallback chain answers;
3. a feature without a fallback: the designed failure path answers, marked degraded;
4. a stream is cut mid-answer: the caller gets an explicit error, never a silent truncation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from tether.cli.render import trace_table
from tether.config.loader import parse_config
from tether.config.store import StoreConfig
from tether.pipeline.result import Result
from tether.sdk import Tether
from tether.settings import Settings
from tether.store.sink import StoreSink
from tether.testing.upstream import Fault, FaultyUpstream

DEMO_CONFIG = """\
providers:
  local: {kind: local}                       # SmolLM2-135M-Instruct on llama.cpp
  acme: {kind: openai, base_url: "UPSTREAM", api_key: demo-key}   # a hosted API (down today)
features:
  assistant:
    prompt: {system: "Answer in one short sentence.", template: "{{ message }}"}
    model: local:smollm2
    max_tokens: 48
    temperature: 0
    on_failure: {respond: "Sorry, I can't answer right now."}
  support:
    prompt: {system: "You answer ACME support questions briefly.", template: "{{ message }}"}
    model: acme:gpt-4o-mini
    fallbacks: [local:smollm2]
    timeout_s: 20
    max_tokens: 48
    temperature: 0
    retry: {max_attempts: 2, backoff_base_s: 0.05}
    on_failure: {respond: "Sorry, support answers are paused. A person will follow up."}
  billing:
    prompt: {template: "{{ message }}"}
    model: acme:gpt-4o-mini
    timeout_s: 5
    retry: {max_attempts: 2, backoff_base_s: 0.05}
    on_failure: {respond: "Billing answers are paused; a person will follow up by email."}
"""


@dataclass
class Row:
    scenario: str
    result: Result
    note: str = ""


async def _stream_answer(console: Console, tether: Tether, feature: str, message: str) -> Row:
    console.print(f"[bold]you[/] > {message}\n[bold]{feature}[/] > ", end="")
    final = None
    async for chunk in tether.stream(feature, {"message": message}):
        console.print(chunk.text, end="", markup=False, highlight=False)
        final = chunk
    console.print()
    assert final is not None and final.result is not None
    if final.error:
        console.print(f"[red]stream error event:[/] {final.error}")
    return Row(feature, final.result, final.error or "")


async def _tour(console: Console, upstream: FaultyUpstream, store: StoreSink) -> list[Row]:
    config = parse_config(DEMO_CONFIG.replace("UPSTREAM", upstream.base_url), "demo.yaml", {})
    rows: list[Row] = []
    async with Tether(config, store=store) as tether:
        console.rule("1. A feature on the embedded model")
        rows.append(
            await _stream_answer(console, tether, "assistant", "What is the capital of France?")
        )
        rows[-1].scenario = "local model"

        console.rule("2. The hosted upstream returns 503: the fallback chain answers")
        upstream.set_fault(Fault.SERVER_503)
        result = await tether.run("support", {"message": "How do I reset my password?"})
        console.print(f"[bold]support[/] > {result.output}")
        assert result.trace is not None
        console.print(trace_table(result.trace))
        rows.append(Row("upstream 503, fallback", result))

        console.rule("3. No fallback declared: the feature's failure path answers")
        result = await tether.run("billing", {"message": "Why was I charged twice?"})
        console.print(f"[bold]billing[/] > {result.output}")
        console.print(f"degraded: [yellow]{result.degraded}[/], reason: [yellow]{result.reason}[/]")
        rows.append(Row("upstream 503, no fallback", result))

        console.rule("4. A stream cut mid-answer: an explicit error, never a silent truncation")
        upstream.set_fault(Fault.STREAM_CUT)
        upstream.text = "Refunds take five to seven business days to reach your card."
        rows.append(await _stream_answer(console, tether, "billing", "How long do refunds take?"))
        rows[-1].scenario = "stream cut mid-answer"
    return rows


def _summary(rows: list[Row]) -> Table:
    table = Table(title="summary", title_justify="left")
    for column in ("scenario", "answered by", "degraded", "reason", "attempts", "latency"):
        table.add_column(column)
    for row in rows:
        r = row.result
        attempts = len(r.trace.attempts) if r.trace is not None else 0
        table.add_row(
            row.scenario,
            r.model or "failure path (static)",
            "[yellow]yes[/]" if r.degraded else "no",
            r.reason or "",
            str(attempts),
            f"{r.latency_ms:.0f} ms",
        )
    return table


def run_demo(console: Console, settings: Settings | None = None) -> None:
    """The tour; its traces go to ``$TETHER_STORE_URL`` or ./tether.db, like `tether run`'s."""
    settings = settings or Settings.load()
    store_config = settings.store_config(StoreConfig())
    store = StoreSink(store_config, config_dir=Path.cwd())
    url = store_config.resolve_url(Path.cwd())
    console.print(
        Panel.fit(
            "tether demo: offline, on the embedded SmolLM2-135M model and a fault-injecting "
            "upstream on 127.0.0.1",
            title="tether",
        )
    )
    with FaultyUpstream(text="ACME support: use the 'Forgot password' link.") as upstream:
        config_text = DEMO_CONFIG.replace("UPSTREAM", upstream.base_url)
        console.print(Syntax(config_text, "yaml", theme="ansi_dark"))
        rows = asyncio.run(_tour(console, upstream, store))
    console.print(_summary(rows))
    console.print(
        f"Every call above left a trace in {url}: `tether traces list --store-url {url}` "
        "lists them. `tether init` writes a starter tether.yaml, "
        "`tether run FEATURE --var message=...` calls a feature.",
        markup=False,
        soft_wrap=True,
    )

"""Rich renderings shared by CLI commands."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

from tether.telemetry.trace import Trace


def model_label(provider: str | None, model: str | None) -> str:
    """``provider:model`` once, whether or not the model reference already names its provider."""
    model = str(model or "-")
    if not provider or model.startswith(f"{provider}:"):
        return model
    return f"{provider}:{model}"


def _value(value: Any) -> str:
    bare = isinstance(value, str) and value and not any(c.isspace() or c in "=\"'" for c in value)
    if bare:
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def event_pairs(data: Mapping[str, Any] | None) -> str:
    """An event's data as ``key=value`` pairs (strings bare unless they need quotes)."""
    return " ".join(f"{key}={_value(value)}" for key, value in (data or {}).items())


def event_text(kind: str, data: Mapping[str, Any] | None) -> str:
    """One event on one line: ``fallback frm=a:m to=b:m reason=upstream_error`` (plain text)."""
    pairs = event_pairs(data)
    return f"{kind} {pairs}" if pairs else kind


def attempt_detail(
    *,
    status: str | None,
    error_class: str | None,
    status_code: int | None,
    error: str | None,
) -> str:
    """An attempt's outcome as markup: ok, or the error class, HTTP status and message."""
    if (status or "ok") == "ok":
        return "[green]ok[/]"
    text = f"[red]{escape(error_class or str(status))}[/]"
    if status_code is not None:
        text += f" HTTP {status_code}"
    if error:
        text += f": {escape(error)}"
    return text


def trace_table(trace: Trace) -> Table:
    """Attempts and decisions of one call, in time order."""
    table = Table(title=f"trace {trace.id}", title_justify="left", show_lines=False)
    table.add_column("ms", justify="right")
    table.add_column("step")
    table.add_column("detail")
    rows: list[tuple[float, str, str]] = []
    for a in trace.attempts:
        detail = attempt_detail(
            status=a.status, error_class=a.error_class, status_code=a.status_code, error=None
        )
        detail += f" in {a.duration_ms:.0f} ms"
        if a.ttft_ms is not None:
            detail += f", first token {a.ttft_ms:.0f} ms"
        if a.usage.total_tokens:
            detail += f", {a.usage.input_tokens}+{a.usage.output_tokens} tokens"
        if a.error:
            detail += f": {escape(a.error)}"  # the cause, in the upstream's and tether's words
        label = escape(model_label(a.provider, a.model))
        rows.append((a.start_ms, f"attempt {a.number}: {label}", detail))
    for e in trace.events:
        rows.append((e.at_ms, f"[yellow]{escape(e.kind)}[/]", escape(event_pairs(e.data))))
    for at, step, detail in sorted(rows, key=lambda r: r[0]):
        table.add_row(f"{at:.0f}", step, detail)
    return table

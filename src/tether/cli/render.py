"""Rich renderings shared by CLI commands."""

from __future__ import annotations

from rich.table import Table

from tether.telemetry.trace import Trace


def trace_table(trace: Trace) -> Table:
    """Attempts and decisions of one call, in time order."""
    table = Table(title=f"trace {trace.id}", title_justify="left", show_lines=False)
    table.add_column("ms", justify="right")
    table.add_column("step")
    table.add_column("detail")
    rows: list[tuple[float, str, str]] = []
    for a in trace.attempts:
        status = "[green]ok[/]" if a.status == "ok" else f"[red]{a.error_class}[/]"
        detail = f"{status} in {a.duration_ms:.0f} ms"
        if a.status_code:
            detail += f", HTTP {a.status_code}"
        if a.ttft_ms is not None:
            detail += f", first token {a.ttft_ms:.0f} ms"
        if a.usage.total_tokens:
            detail += f", {a.usage.input_tokens}+{a.usage.output_tokens} tokens"
        rows.append((a.start_ms, f"attempt {a.number}: {a.model}", detail))
    for e in trace.events:
        detail = ", ".join(f"{k}={v}" for k, v in e.data.items() if k != "error")
        rows.append((e.at_ms, f"[yellow]{e.kind}[/]", detail))
    for at, step, detail in sorted(rows, key=lambda r: r[0]):
        table.add_row(f"{at:.0f}", step, detail)
    return table

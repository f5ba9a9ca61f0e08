"""Production traffic as an eval dataset: stored traces → JSONL rows ``load_dataset`` reads.

A row keeps what the call was asked (its ``vars``, or its conversation as ``messages`` when it
was not the feature's own template rendered from those vars), its answer as ``expected`` (a
reference, not an assert; a degraded answer is not a reference: it goes to
``metadata.answer``), ``tags`` (``degraded``, ``guard_tripped``, ``cache_hit``,
``truncated``) and its provenance in ``metadata``: trace id, the feature's ``config_version``
(the hash of its effective spec), variant, degraded and why, model, start time.

A trace whose feature captured only metadata (``trace: {capture: metadata}``) kept no text of
what was asked: it cannot become a row and is counted as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from jinja2 import TemplateError

from tether.config.models import FeatureConfig
from tether.store.traces import TraceDict, TraceStore, parse_since

WHERE_FORMS = (
    "degraded, healthy, guard_tripped, cache_hit, variant=NAME, model=PROVIDER:MODEL, "
    "since=2h (or an ISO time)"
)
TRIPPING_ACTIONS = frozenset(("block", "redact", "reask", "fallback", "review"))


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Which traces become rows (``--where`` conditions, all of them must hold)."""

    degraded: bool | None = None
    guard_tripped: bool = False
    cache_hit: bool = False
    variant: str | None = None
    model: str | None = None
    since: datetime | None = None


def parse_where(conditions: Sequence[str]) -> TraceFilter:
    """``["degraded", "variant=candidate", "since=2h"]`` as a :class:`TraceFilter`; raises
    ValueError naming the condition and the accepted forms."""
    fields: dict[str, Any] = {}
    for condition in conditions:
        name, sep, value = (part.strip() for part in condition.partition("="))
        flags = {"degraded": ("degraded", True), "healthy": ("degraded", False)}
        flags.update(guard_tripped=("guard_tripped", True), cache_hit=("cache_hit", True))
        if not sep and name in flags:
            key, flag = flags[name]
            fields[key] = flag
        elif sep and value and name in ("variant", "model"):
            fields[name] = value
        elif sep and value and name == "since":
            fields["since"] = parse_since(value)
        else:
            raise ValueError(f"{condition!r} is not a condition; use {WHERE_FORMS}")
    return TraceFilter(**fields)


def guard_tripped(trace: Mapping[str, Any]) -> bool:
    """Whether a guard failed on the call and acted (blocked, redacted, re-asked, fell back
    or asked for review); a failure it only logged does not count."""
    for event in trace.get("events") or ():
        data = event.get("data") or {}
        acted = data.get("action") in TRIPPING_ACTIONS
        if event.get("kind") == "guard" and data.get("passed") is False and acted:
            return True
    return False


def matches(trace: Mapping[str, Any], where: TraceFilter) -> bool:
    """The conditions the store cannot filter on: guards and cache."""
    if where.cache_hit and trace.get("cache") != "hit":
        return False
    return not (where.guard_tripped and not guard_tripped(trace))


class Prompts:
    """The prompt each variant of a feature renders (None: the config is not known), to tell a
    templated call from a conversation."""

    def __init__(self, feature: FeatureConfig | None) -> None:
        self.feature = feature
        self._templates: dict[str, tuple[Any, bool]] = {}

    def template(self, variant: str) -> tuple[Any, bool] | None:
        """The variant's compiled user template and whether it has a system prompt."""
        if self.feature is None:
            return None
        if variant not in self._templates:
            from tether.pipeline.feature import template_environment

            try:
                config = self.feature.variant(variant)
            except KeyError:  # a variant since removed from the config: its base prompt
                config = self.feature
            prompt = config.prompt
            env = template_environment()
            self._templates[variant] = (env.from_string(prompt.template), bool(prompt.system))
        return self._templates[variant]


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    return {k: message[k] for k in ("role", "content", "name", "tool_call_id", "tool_calls")
            if message.get(k) is not None}  # fmt: skip


def conversation(asked: Mapping[str, Any], prompt: tuple[Any, bool] | None) -> list[Any] | None:
    """The messages a row must carry, or None when the call was the feature's template
    rendered from its variables (then ``vars`` reproduce it)."""
    messages = [m for m in asked.get("messages") or () if isinstance(m, Mapping)]
    variables = asked.get("variables") or {}
    has_system = prompt[1] if prompt is not None else True
    if has_system and messages and messages[0].get("role") == "system":
        messages = messages[1:]  # the feature's own system prompt: the run adds it again
    single = (
        len(messages) == 1
        and messages[0].get("role") == "user"
        and not messages[0].get("tool_calls")
    )
    if single and variables:
        if prompt is None:
            return None
        try:
            rendered = prompt[0].render(variables)
        except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError):
            rendered = None  # the prompt no longer renders these vars: keep the conversation
        if rendered == messages[0].get("content"):
            return None
    return [_message(m) for m in messages] if messages else None


def _iso(epoch: Any) -> str | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def trace_row(trace: Mapping[str, Any], prompts: Prompts) -> dict[str, Any] | None:
    """A dataset row from a ``TraceStore.scan`` trace; None when it kept no input text."""
    asked = trace.get("input")
    if not isinstance(asked, Mapping) or asked.get("capture") not in ("full", "redacted"):
        return None
    variant = str(trace.get("variant") or "default")
    degraded = bool(trace.get("degraded"))
    row: dict[str, Any] = {}
    variables = asked.get("variables") or {}
    messages = conversation(asked, prompts.template(variant))
    if variables:
        row["vars"] = dict(variables)
    if messages is not None:
        row["messages"] = messages
    answer = trace.get("output")
    if isinstance(answer, str) and not degraded:
        row["expected"] = answer
    tags = [
        name
        for name, present in (
            ("degraded", degraded),
            ("guard_tripped", guard_tripped(trace)),
            ("cache_hit", trace.get("cache") == "hit"),
            ("truncated", bool(asked.get("truncated"))),
        )
        if present
    ]
    if tags:
        row["tags"] = tags
    metadata = {
        "trace_id": trace.get("id"),
        "config_version": trace.get("config_version"),
        "feature": trace.get("feature"),
        "variant": variant,
        "degraded": degraded,
        "reason": trace.get("reason"),
        "model": trace.get("model"),
        "started_at": _iso(trace.get("started_at")),
    }
    if degraded and isinstance(answer, str):
        metadata["answer"] = answer
    row["metadata"] = metadata
    return row


@dataclass(slots=True)
class ExportStats:
    """What an export did: traces read, rows written, traces skipped for lack of input."""

    scanned: int = 0
    written: int = 0
    skipped: int = 0


def export_rows(
    traces: TraceStore,
    feature: str,
    where: TraceFilter,
    out: IO[str],
    *,
    config: FeatureConfig | None = None,
    limit: int | None = None,
    on_trace: Callable[[ExportStats], None] | None = None,
) -> ExportStats:
    """Write one JSONL row per matching trace of ``feature`` (newest first, at most ``limit``)
    to ``out``; ``config`` (the feature's, if known) tells templated calls from
    conversations."""
    stats = ExportStats()
    prompts = Prompts(config)
    found: Iterable[TraceDict] = traces.scan(
        feature=feature,
        variant=where.variant,
        degraded=where.degraded,
        since=where.since,
        model=where.model,
    )
    if limit is not None and limit <= 0:
        return stats
    for trace in found:
        stats.scanned += 1
        if matches(trace, where):
            row = trace_row(trace, prompts)
            if row is None:
                stats.skipped += 1
            else:
                out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                stats.written += 1
        if on_trace is not None:
            on_trace(stats)
        if limit is not None and stats.written >= limit:
            break
    return stats

"""LLM-as-judge: ask a configured model for a verdict on an output, and read its answer.

A :class:`Judge` asks any configured provider's model (``provider:model``) through the
provider itself (no feature pipeline: a judge has no guards, budgets or failure path), with the
temperature and token limit of ``evals.judge``. It asks for a JSON verdict; where the provider
can constrain its answer to a JSON schema (the embedded model, through a llama.cpp grammar), it
does, so even a weak judge writes a readable verdict.

Verdicts are cached on disk (``<config dir>/.tether/judge-cache.sqlite``), keyed by the judge
model, the full prompt and the parameters: a re-run of the same judgement makes no call and
costs nothing (:attr:`JudgeUsage.cached`). A judgement the judge could not make (its answer
unreadable, its provider down) is a failed score with the reason, never an exception that stops
the run: the readers here (:func:`rubric_verdict`, :func:`closedqa_verdict`,
:func:`factuality_verdict`) never raise.

One :class:`Judge` serves every model-graded scorer built from one
:class:`~tether.evals.types.ScoringContext` (:func:`judge_for`); :func:`close_judge` closes its
cache when the run ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.config.features import split_model_ref
from tether.errors import ConfigError, ProviderError, RateLimited
from tether.evals.cache import DiskCache
from tether.evals.types import JudgeUsage, ScoringContext
from tether.providers.base import CallContext
from tether.resilience.timeout import WithTimeout
from tether.telemetry.trace import Trace
from tether.types import Message, ModelRequest, ModelResponse

if TYPE_CHECKING:
    from tether.sdk import Tether

log = logging.getLogger("tether.evals.judge")

CACHE_FILE = "judge-cache.sqlite"
SHARED_KEY = "judge"
ATTEMPTS = 4  # a transient failure (429, 5xx, timeout) is retried this many times in all
MAX_WAIT_S = 30.0  # the longest Retry-After honoured between two attempts
ATTEMPT_S = 300.0  # one judge call's limit (a local model may queue behind other judgements)
BACKOFF_S = 0.5  # the wait before the first retry, doubled for each next one
JSON_MODE_KINDS = frozenset({"local"})  # providers whose answers a JSON schema constrains
_SHOWN = 300  # characters of an unreadable answer quoted in the reason
_YES = frozenset({"yes", "y", "pass", "passed", "true", "correct"})
_NO = frozenset({"no", "n", "fail", "failed", "false", "incorrect"})
_LAST_LETTER = re.compile(r"\b([YN])\W*$")  # the answer's last word is the letter Y or N


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a judge's answer says: ``passed``, ``score`` (0..1) and why."""

    passed: bool
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class JudgeAnswer:
    """A judge's raw answer (``text``), the judge it came from (``model``) and what it cost
    (``usage``: one call, or one cached verdict)."""

    text: str
    model: str
    usage: JudgeUsage

    @property
    def cached(self) -> bool:
        return self.usage.cached > 0


def unreadable(text: str) -> Verdict:
    """The failed verdict of an answer no reader understood."""
    shown = text.strip()
    if len(shown) > _SHOWN:
        shown = shown[:_SHOWN] + "..."
    return Verdict(False, 0.0, f"the judge's answer could not be read: {shown or '(empty)'}")


# ---------------------------------------------------------------------------- reading verdicts


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (bare, in a code fence, or wrapped in prose); None
    when there is none."""
    decoder = json.JSONDecoder(strict=False)  # a raw newline inside a string is still read
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    word = str(value).strip().strip(".!\"'").lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    return None


def as_score(value: Any) -> float | None:
    """A judge's score as a number in 0..1 (clamped), or None when it is not a number (a bool,
    text, NaN)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number:  # NaN
        return None
    return min(1.0, max(0.0, number))


def _plain_word(text: str) -> bool | None:
    """A verdict written as a plain word: the answer's first or last word is yes/pass/true or
    no/fail/false (first wins)."""
    words = re.findall(r"[a-z]+", text.lower())
    for word in (words[:1] + words[-1:]) if words else []:
        if word in _YES:
            return True
        if word in _NO:
            return False
    return None


def rubric_verdict(text: str) -> Verdict:
    """Read an ``llm-rubric`` answer: ``{"reason", "pass", "score"}`` (the first JSON object in
    the text; ``pass`` may be a word such as "yes"; a missing ``score`` is 1 or 0 by ``pass``,
    a missing ``pass`` is ``score >= 0.5``), else a plain yes/pass/fail word."""
    data = first_json_object(text)
    if data is not None:
        passed = _as_bool(data["pass"]) if "pass" in data else None
        score = as_score(data.get("score"))
        if passed is None and score is not None:
            passed = score >= 0.5
        if passed is not None:
            score = (1.0 if passed else 0.0) if score is None else score
            reason = str(data.get("reason") or ("passed" if passed else "failed"))
            return Verdict(passed, score, reason)
        return unreadable(text)
    passed = _plain_word(text)
    if passed is None:
        return unreadable(text)
    return Verdict(passed, 1.0 if passed else 0.0, text.strip())


def closedqa_verdict(text: str) -> Verdict:
    """Read a ``model-graded-closedqa`` answer: reasoning ending with the letter Y (meets the
    criterion) or N, or ``{"reasoning", "answer": "Y"|"N"}`` (JSON mode)."""
    stripped = text.strip()
    letter = _LAST_LETTER.search(stripped)
    if letter is not None:
        passed = letter.group(1) == "Y"
        meets = "meets" if passed else "does not meet"
        return Verdict(passed, float(passed), f"the submission {meets} the criterion: {stripped}")
    data = first_json_object(text)
    if data is not None:
        said = _as_bool(data.get("answer", data.get("pass")))
        if said is not None:
            why = str(data.get("reasoning") or data.get("reason") or "")
            meets = "meets" if said else "does not meet"
            return Verdict(said, float(said), f"the submission {meets} the criterion: {why}")
    return unreadable(text)


FACTUALITY_CATEGORIES = {
    "A": "the submission is a subset of the reference and consistent with it",
    "B": "the submission is a superset of the reference and consistent with it",
    "C": "the submission has the same details as the reference",
    "D": "the submission disagrees with the reference",
    "E": "the answers differ, but not in a way that matters for factuality",
}
# promptfoo's option names (``factuality: {subset: 1, ..., disagree: 0}``) per category
FACTUALITY_OPTIONS = {
    "A": "subset",
    "B": "superset",
    "C": "agree",
    "D": "disagree",
    "E": "differButFactual",
}
_CATEGORY = re.compile(r"\s*\(?([a-eA-E])\)")


def factuality_scores(options: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The score of each category (A-E): 1 except D (a disagreement), or as ``options`` (the
    ``factuality:`` option, promptfoo's names) says. A category scoring 0 fails."""
    given = dict(options or {})
    scores = {}
    for letter, option in FACTUALITY_OPTIONS.items():
        default = 0.0 if letter == "D" else 1.0
        value = as_score(given.get(option))
        scores[letter] = default if value is None else value
    return scores


def factuality_verdict(text: str, scores: Mapping[str, float] | None = None) -> Verdict:
    """Read a ``factuality`` answer: ``{"category": "A".."E", "reason"}``, else a letter in
    parentheses such as "(D)". A category that scores 0 fails (by default only D)."""
    lookup = dict(scores) if scores is not None else factuality_scores()
    data = first_json_object(text)
    letter: str | None = None
    reason = ""
    if data is not None and isinstance(data.get("category"), str):
        letter = data["category"].strip().strip("()").upper()
        reason = str(data.get("reason") or "").strip()
    else:
        match = _CATEGORY.search(text)
        if match is not None:
            letter = match.group(1).upper()
            reason = text[match.end() :].strip()
    if letter not in lookup:
        return unreadable(text)
    score = lookup[letter]
    detail = f"({letter}) {FACTUALITY_CATEGORIES[letter]}"
    return Verdict(score > 0, score, f"{detail}: {reason}" if reason else detail)


# ---------------------------------------------------------------------------- asking


class Judge:
    """Asks judge models for verdicts, through ``tether``'s providers, with an optional disk
    ``cache``. Concurrency safe: one judgement asked twice at once is asked of the model once
    (the second waits and counts as cached)."""

    def __init__(
        self,
        tether: Tether,
        *,
        cache: DiskCache | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        feature: str | None = None,
    ) -> None:
        self.tether = tether
        self.cache = cache
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.feature = feature
        self.attempt_s = ATTEMPT_S  # one call's time limit
        self.backoff_s = BACKOFF_S  # the first wait before a retry (doubling)
        self._pending: dict[str, asyncio.Future[str]] = {}

    def json_mode(self, ref: str) -> bool:
        """Whether the judge ``ref``'s answers are constrained to a JSON schema (the embedded
        model: a llama.cpp grammar)."""
        provider, _ = split_model_ref(ref)
        declared = self.tether.config.providers.get(provider)
        return declared is not None and declared.kind in JSON_MODE_KINDS

    def request(
        self, ref: str, messages: Sequence[Message], schema: Mapping[str, Any] | None = None
    ) -> ModelRequest:
        """What ``ref`` is asked: the messages, with a JSON schema when the judge honours one."""
        response_format = None
        if schema is not None and self.json_mode(ref):
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "strict": True, "schema": dict(schema)},
            }
        return ModelRequest(
            messages=list(messages),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            response_format=response_format,
        )

    @staticmethod
    def key(ref: str, request: ModelRequest) -> str:
        """The cache key: the judge model, the full prompt and the parameters."""
        messages = [[m.role, m.content] for m in request.messages]
        params = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "response_format": request.response_format,
        }
        return DiskCache.key("judge", ref, messages, params)

    async def ask(
        self, ref: str, messages: Sequence[Message], schema: Mapping[str, Any] | None = None
    ) -> JudgeAnswer:
        """The judge ``ref``'s answer to ``messages`` (from the cache when it has it). Raises
        ProviderError when the judge could not be asked (after retrying transient failures),
        ConfigError when ``ref`` names no configured provider."""
        request = self.request(ref, messages, schema)
        if self.cache is None:
            return await self._call(ref, request)
        key = self.key(ref, request)
        hit = self._cached(key)
        if hit is not None:
            return JudgeAnswer(hit, ref, JudgeUsage(cached=1))
        while (pending := self._pending.get(key)) is not None:  # being asked: share it
            try:
                text = await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and task is not None and not task.cancelling():
                    continue  # the asker was cancelled, not this task: ask again
                raise
            return JudgeAnswer(text, ref, JudgeUsage(cached=1))
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            answer = await self._call(ref, request)
            future.set_result(answer.text)
        except BaseException as exc:  # re-raised: the waiters get the same outcome
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: nobody waiting is not an error
            raise
        finally:
            del self._pending[key]
        self._store(key, {"text": answer.text, "model": ref})
        return answer

    def _cached(self, key: str) -> str | None:
        """The cached answer under ``key`` (None: not cached, or the cache is unreadable)."""
        assert self.cache is not None
        try:
            hit = self.cache.get(key)
        except sqlite3.Error as exc:
            log.warning("judge cache %s unreadable (%s): asking the judge", self.cache.path, exc)
            return None
        if isinstance(hit, dict) and isinstance(hit.get("text"), str):
            return str(hit["text"])
        return None

    def _store(self, key: str, value: dict[str, Any]) -> None:
        assert self.cache is not None
        try:
            self.cache.put(key, value)
        except sqlite3.Error as exc:
            log.warning("judge cache %s not written (%s): the verdict stands", self.cache.path, exc)

    async def _call(self, ref: str, request: ModelRequest) -> JudgeAnswer:
        """One judgement, retrying a transient failure (honouring a 429's Retry-After)."""
        provider, model = split_model_ref(ref)
        upstream = WithTimeout(self.tether.provider(provider).model(model), self.attempt_s)
        for attempt in range(1, ATTEMPTS + 1):
            trace = Trace(feature=f"{self.feature or 'eval'}:judge")
            try:
                response = await upstream.complete(request, CallContext(trace))
            except ProviderError as exc:
                if not exc.retryable or attempt == ATTEMPTS:
                    raise
                wait = self.backoff_s * 2 ** (attempt - 1)
                if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
                    wait = exc.retry_after_s
                await asyncio.sleep(min(MAX_WAIT_S, max(0.0, wait)))
                continue
            return JudgeAnswer(response.text, ref, self._usage(provider, model, response))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _usage(self, provider: str, model: str, response: ModelResponse) -> JudgeUsage:
        """One call's usage, priced with the configured price table (the provider's
        ``prices:`` over the packaged table), else as the provider priced it."""
        usage = response.usage
        priced = self.tether.prices.pricing(provider).cost(
            usage, response.model or model, fallback=model
        )
        cost = priced.usd if priced.known else response.cost_usd
        return JudgeUsage(
            calls=1,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=cost,
        )


def judge_model(ctx: ScoringContext, override: Any = None) -> str:
    """The judge a scorer asks: its ``provider`` option (``provider:model``, or promptfoo's
    ``{id: provider:model}``), else ``evals.judge.model``, else the evaluated feature's model.
    ConfigError when there is none or it is not ``provider:model``."""
    ref = override.get("id") if isinstance(override, Mapping) else override
    if isinstance(ref, str) and ref.count(":") >= 2:  # promptfoo's openai:chat:MODEL
        provider, _, model = ref.partition(":")
        ref = f"{provider}:{model.removeprefix('chat:')}"
    if not ref:
        ref = ctx.judge_model
    if not ref and ctx.tether is not None and ctx.feature is not None:
        feature = ctx.tether.config.features.get(ctx.feature)
        ref = None if feature is None else feature.model
    if not ref:
        raise ConfigError(
            "a model-graded scorer needs a judge: set evals.judge.model (e.g. local:smollm2) "
            "or the assert's provider option"
        )
    split_model_ref(str(ref))
    return str(ref)


def judge_for(ctx: ScoringContext) -> Judge:
    """The :class:`Judge` every scorer built from ``ctx`` shares (made on first use, with the
    disk cache in ``ctx.cache_dir`` when it is set). ConfigError without ``ctx.tether``."""
    found = ctx.shared.get(SHARED_KEY)
    if isinstance(found, Judge):
        return found
    if ctx.tether is None:
        raise ConfigError(
            "model-graded scorers need a Tether to reach the judge's provider: build the "
            "ScoringContext with tether=..."
        )
    cache = None if ctx.cache_dir is None else DiskCache(ctx.cache_dir / CACHE_FILE)
    judge = Judge(
        ctx.tether,
        cache=cache,
        max_tokens=ctx.judge_max_tokens,
        temperature=ctx.judge_temperature,
        feature=ctx.feature,
    )
    ctx.shared[SHARED_KEY] = judge
    return judge


async def close_judge(ctx: ScoringContext) -> None:
    """Close the judge cache of ``ctx`` (when a judge was made): call when the run ends."""
    judge = ctx.shared.pop(SHARED_KEY, None)
    if isinstance(judge, Judge) and judge.cache is not None:
        judge.cache.close()

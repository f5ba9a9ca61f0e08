"""The budget stage: reserve a call's worst case before the model is asked, settle to what it
actually cost afterwards (or on failure, or when the caller went away mid-stream).

Before the call (:meth:`BudgetStage.before`):

1. Count the prompt's tokens (:class:`~tether.budgets.tokens.TokenCounter`; the most any model
   of the chain would count, since a fallback may answer) and give the request an output limit
   (``max_tokens``; ``budgets.default_max_tokens`` when it had none: the worst case needs one).
2. The ``request`` budget lowers that limit so the prompt plus the output fits ``max_tokens``
   and the priced worst case fits ``max_cost_usd`` (trace event ``max_tokens_capped``
   ``{by: budget}``); a prompt that alone exceeds them is refused.
3. Reserve the worst case (tokens; cost at the dearest input and output prices of the chain) on
   every declared scope whose identity the call has, in ONE atomic ``reserve``. A hard scope
   that would go over refuses the whole call (:class:`~tether.errors.BudgetExceeded` with the
   period's end; the failure path answers, or the caller gets it with
   ``on_exceeded: reject``); a soft one lets it through and says so (trace event, log line).

After the call, or when it failed: settle each reservation to the actual usage and cost of the
call's attempts (a cache hit costs nothing; an attempt cut before its usage came, e.g. a client
that disconnected mid-stream, is charged for its prompt and the text it streamed, at
:data:`CHARS_PER_TOKEN` characters a token).

A model of the chain with no price: ``unknown_price: allow`` (the default) prices it at 0;
``block`` refuses calls to a feature with a cost budget (reason ``budget_exceeded``, trace event
``budget_exceeded`` with ``why: unknown_price``) until the model is priced.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.budgets.alerts import BudgetAlert
from tether.budgets.scopes import Held, held, identity_of
from tether.config.budgets import BudgetsConfig, BudgetScope
from tether.config.features import split_model_ref
from tether.errors import BudgetExceeded, TetherError
from tether.pipeline.stages import Slot, Stage
from tether.providers.pricing import PER_TOKENS, Price
from tether.state.base import Level, Reservation
from tether.telemetry.trace import Attempt, Trace
from tether.types import ModelRequest, Usage

if TYPE_CHECKING:
    from tether.config.features import FeatureConfig
    from tether.pipeline.call import Answer, Call
    from tether.pipeline.services import Services

log = logging.getLogger("tether.budgets")
CHARS_PER_TOKEN = 4.0  # a cut stream's text, in tokens (OpenAI's rule of thumb for English)


@dataclass(slots=True)
class _Booked:
    """What one call reserved (``reserved``: False when the state was unavailable and
    ``fail_open`` let the call through unreserved), for its settle."""

    held: list[Held]
    amounts: list[float]
    reserved: bool
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class _Worst:
    """The dearest per-token prices of the chain (USD per 1M) and whether any is unknown."""

    input: float
    output: float
    unknown: tuple[str, ...]


class BudgetStage(Stage):
    """Reserves before, settles after (see the module docstring)."""

    slot: Slot = "budget"
    whole_answer = False
    applies_to_embeddings = True

    def __init__(
        self,
        name: str,
        feature: FeatureConfig,
        services: Services,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.feature = feature
        self.budgets: BudgetsConfig = feature.budgets
        self.services = services
        self.clock = clock
        self.chain = list(feature.chain)
        # one model of the chain per tokenizer: the others would count the prompt alike
        tokens = services.tokens
        self.counted = list({tokens.tokenizer(ref): ref for ref in self.chain}.values())
        self._logged: set[str] = set()
        request = self.budgets.request
        self.costed = any(b.cost_usd is not None for _, b in self.budgets.scopes()) or (
            request is not None and request.max_cost_usd is not None
        )
        self._worst = self.worst_prices()  # prices are fixed for the Tether's life

    # ------------------------------------------------------------------ prices

    def _price(self, ref: str) -> Price | None:
        provider, model = split_model_ref(ref)
        declared = self.services.config.providers.get(provider)
        return self.services.prices.pricing(provider, declared).price(model)

    def worst_prices(self) -> _Worst:
        """The chain's dearest input and output prices (a fallback may answer)."""
        most_in = most_out = 0.0
        unknown: list[str] = []
        for ref in self.chain:
            price = self._price(ref)
            if price is None:
                unknown.append(ref)
                continue
            pin, pout = price.most_per_token
            most_in, most_out = max(most_in, pin), max(most_out, pout)
        return _Worst(most_in, most_out, tuple(unknown))

    # ------------------------------------------------------------------ before

    async def before(self, call: Call) -> Answer | None:
        trace = call.trace
        worst = self._worst
        if worst.unknown and self.costed and self.budgets.unknown_price == "block":
            self._refuse_unknown(trace, worst)
        embedding = call.kind == "embedding"
        prompt = await self._prompt_tokens(call.request, embedding)
        output = 0 if embedding else self._output_limit(call, prompt, worst)
        tokens = prompt + output
        cost = (prompt * worst.input + output * worst.output) / PER_TOKENS
        now = self.clock()
        counters = held(self.name, self.budgets, self._identities(call), now)
        amounts = [cost if h.dimension == "cost_usd" else float(tokens) for h in counters]
        booked = _Booked(counters, amounts, reserved=False, prompt_tokens=prompt)
        call.state[self] = booked
        if not counters:
            return None
        found = await self.services.state.checked(
            trace, "budget", lambda s: s.reserve([h.counter for h in counters], amounts), None
        )
        if found is None:  # fail_open: through unreserved (said on the trace and in the log)
            return None
        if not found.ok:
            del call.state[self]
            self._alert_refused(call, counters, amounts, found)
            self._refuse(trace, counters, found, now)
        booked.reserved = True
        trace.event(
            "budget_reserved",
            scopes=sorted({h.scope for h in counters}),
            tokens=tokens,
            cost_usd=round(cost, 10),
        )
        self._check_levels(call, counters, amounts, found.levels, reserving=True)
        return None

    def _identities(self, call: Call) -> dict[BudgetScope, str]:
        caller, found = call.caller, {}
        for scope, _ in self.budgets.scopes():
            who = identity_of(scope, self.name, caller.user, caller.tenant, caller.key)
            if who is None:
                call.trace.event("budget_scope_skipped", scope=scope)
            else:
                found[scope] = who
        return found

    async def _prompt_tokens(self, request: ModelRequest, embedding: bool) -> int:
        """The most any model of the chain counts (an embedding call's inputs are the
        request's user messages, counted without chat framing)."""
        counter = self.services.tokens
        if embedding:
            texts = [m.content or "" for m in request.messages]
            counts = [await counter.acount_texts(ref, texts) for ref in self.counted]
        else:
            counts = [await counter.acount(ref, request) for ref in self.counted]
        return max(counts or [0])

    def _output_limit(self, call: Call, prompt: int, worst: _Worst) -> int:
        """The output limit the call goes out with: asked, else the default, lowered to fit
        the request budget (raises BudgetExceeded when not even one token fits)."""
        request = call.request
        asked = request.max_tokens
        limit = asked if asked is not None else self.budgets.default_max_tokens
        cap = self.budgets.request
        if cap is not None and cap.max_tokens is not None:
            limit = min(limit, cap.max_tokens - prompt)
        if cap is not None and cap.max_cost_usd is not None:
            room = cap.max_cost_usd * PER_TOKENS - prompt * worst.input
            if room < 0:
                limit = 0
            elif worst.output > 0:
                limit = min(limit, math.floor(room / worst.output))
        if limit < 1:
            self._refuse_request(call.trace, prompt)
        if asked is not None and limit < asked:
            call.trace.event("max_tokens_capped", asked=asked, limit=limit, by="budget")
        if limit != asked:
            call.request = dataclasses.replace(request, max_tokens=limit)
        return limit

    # ------------------------------------------------------------------ refusals

    def _exceeded(
        self,
        message: str,
        scope: str,
        resets_at: float | None = None,
        retry_after_s: float | None = None,
    ) -> BudgetExceeded:
        return BudgetExceeded(
            message,
            scope=scope,
            resets_at=resets_at,
            retry_after_s=retry_after_s,
            to_caller=self.budgets.on_exceeded == "reject",
        )

    def _refuse_request(self, trace: Trace, prompt: int) -> None:
        cap = self.budgets.request
        assert cap is not None
        trace.event(
            "budget_exceeded",
            scope="request",
            limit=cap.max_tokens if cap.max_cost_usd is None else cap.max_cost_usd,
            spent=prompt,
            reserved=0,
            resets_at=None,
            mode="hard",
        )
        raise self._exceeded(
            f"feature {self.name}: the prompt ({prompt} tokens) leaves no room for an answer "
            f"under budgets.request ({cap.model_dump(exclude_none=True)}); shorten the input "
            "or raise the request budget",
            scope="request",
        )

    def _refuse_unknown(self, trace: Trace, worst: _Worst) -> None:
        trace.event(
            "budget_exceeded",
            scope="request",
            limit=None,
            spent=0,
            reserved=0,
            resets_at=None,
            mode="hard",
            why="unknown_price",
            models=list(worst.unknown),
        )
        raise self._exceeded(
            f"feature {self.name}: {', '.join(worst.unknown)} has no price, and its cost "
            "budget says unknown_price: block; price it under providers.NAME.prices "
            "or set budgets.unknown_price: allow",
            scope="request",
        )

    def _refuse(self, trace: Trace, counters: list[Held], found: Reservation, now: float) -> None:
        index = found.refused if found.refused is not None else 0
        refused = counters[index]
        level = found.levels[index] if index < len(found.levels) else Level()
        resets_at = refused.window.end
        trace.event(
            "budget_exceeded",
            scope=refused.scope,
            limit=refused.limit,
            spent=level.spent,
            reserved=level.reserved,
            resets_at=resets_at,
            mode="hard",
            dimension=refused.dimension,
        )
        log.info(
            "budget exceeded: feature %s %s %s %s limit %g (spent %g, reserved %g) until %s",
            self.name,
            refused.scope,
            refused.identity,
            refused.dimension,
            refused.limit,
            level.spent,
            level.reserved,
            refused.window.label,
        )
        raise self._exceeded(
            f"feature {self.name}: the {refused.scope} budget ({refused.dimension} "
            f"{refused.limit:g} per {refused.budget.per}) is spent until the period ends; "
            "try again then, or raise the limit",
            scope=refused.scope,
            resets_at=resets_at,
            retry_after_s=max(resets_at - now, 0.0),
        )

    # ------------------------------------------------------------------ levels and alerts

    def _check_levels(
        self,
        call: Call,
        counters: list[Held],
        added: list[float],
        levels: tuple[Level, ...],
        reserving: bool = False,
    ) -> None:
        """Soft scopes this call took over their limit (when ``reserving``), and alert
        thresholds crossed by this change."""
        trace = call.trace
        for item, delta, level in zip(counters, added, levels, strict=False):
            now = level.spent + level.reserved
            if reserving and not item.counter.hard and now > item.limit:
                trace.event("budget_soft_exceeded", scope=item.scope, limit=item.limit, spent=now)
                self._log_soft(item, now)
            for threshold in item.budget.alerts:
                mark = threshold * item.limit
                if now - delta < mark <= now:
                    trace.event("budget_alert", scope=item.scope, threshold=threshold)
                    alert = BudgetAlert(
                        self.name,
                        item.scope,
                        item.identity,
                        item.dimension,
                        threshold,
                        item.limit,
                        level.spent,
                        level.reserved,
                        item.window.start,
                        item.window.end,
                        trace.config_version,
                    )
                    self.services.alerts.crossed(self.services.state, alert)

    def _alert_refused(
        self, call: Call, counters: list[Held], amounts: list[float], found: Reservation
    ) -> None:
        """A hard scope that refused a call has reached its limit as far as the caller can
        tell: its thresholds up to what the call would have taken it to fire (100% included,
        which a hard limit never lets spending cross)."""
        index = found.refused if found.refused is not None else 0
        if index >= len(found.levels):
            return
        level = found.levels[index]
        wanted = Level(level.spent, level.reserved + amounts[index])
        self._check_levels(call, [counters[index]], [amounts[index]], (wanted,))

    def _log_soft(self, item: Held, level: float) -> None:
        """One log line per soft counter and period in this process (the trace has each
        call)."""
        if item.counter.key in self._logged:
            return
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged.add(item.counter.key)
        log.warning(
            "soft budget exceeded: feature %s %s %s %s at %g of %g (calls go on: mode soft)",
            self.name,
            item.scope,
            item.identity,
            item.dimension,
            level,
            item.limit,
        )

    # ------------------------------------------------------------------ settle

    async def after(self, call: Call, answer: Answer) -> Answer:
        await self._settle(call)
        return answer

    async def failed(self, call: Call, error: TetherError) -> None:
        await self._settle(call)

    def actual(self, trace: Trace, prompt_tokens: int) -> tuple[int, float]:
        """Tokens and USD the call's attempts used (see the module docstring for cut
        streams: such an attempt gets the estimate as its usage and cost, so the trace says
        what the budget was charged; event ``usage_estimated``)."""
        tokens, cost = 0, 0.0
        for attempt in trace.attempts:
            if not attempt.usage.total_tokens and attempt.chars_out:
                out = math.ceil(attempt.chars_out / CHARS_PER_TOKEN)
                attempt.usage = Usage(prompt_tokens, out)
                attempt.cost_usd = self._cut_cost(attempt, prompt_tokens, out)
                trace.event(
                    "usage_estimated",
                    model=attempt.model,
                    input_tokens=prompt_tokens,
                    output_tokens=out,
                )
            tokens += attempt.usage.total_tokens
            cost += attempt.cost_usd
        return tokens, cost

    def _cut_cost(self, attempt: Attempt, prompt: int, out: int) -> float:
        price = self._price(attempt.model) if ":" in attempt.model else None
        if price is None:
            return 0.0
        return (prompt * price.input + out * price.output) / PER_TOKENS

    async def _settle(self, call: Call) -> None:
        booked: _Booked | None = call.state.pop(self, None)
        if booked is None:
            return
        trace = call.trace
        tokens, cost = self.actual(trace, booked.prompt_tokens)
        trace.event("budget_settled", tokens=tokens, cost_usd=round(cost, 10))
        if not booked.held:
            return
        counters = [h.counter for h in booked.held]
        reserved = booked.amounts if booked.reserved else [0.0] * len(counters)
        spent = [cost if h.dimension == "cost_usd" else float(tokens) for h in booked.held]
        deltas = [s - r for s, r in zip(spent, reserved, strict=True)]
        # Only a call that spent more than it reserved can take a level across an alert
        # threshold: such a settle waits for the levels; any other is written behind (the
        # answer need not wait for its round trip). The call is over: its answer stands
        # whatever the policy; a settle that cannot be written leaves the reservation to
        # expire with the period (the trace and log say so).
        wait = any(delta > 0 for delta in deltas)
        levels = await self.services.state.best_effort(
            trace, "budget_settle", lambda s: s.settle(counters, reserved, spent, wait=wait)
        )
        if wait and levels is not None:
            self._check_levels(call, booked.held, deltas, levels)

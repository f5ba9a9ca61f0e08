"""The price table: what a model's tokens cost, from versioned package data.

``tether/data/prices.json`` names its source, commit and retrieval date; prices are USD per 1M
tokens, keyed by provider kind, then by model. A dated snapshot such as
``gpt-4o-mini-2024-07-18`` resolves to its base model (``gpt-4o-mini``) by the longest listed
prefix. Input, output, cached-input and reasoning tokens are priced separately (cached input
defaults to the input price, reasoning to the output price).

Each provider prices its models with a :class:`Pricing`: its own ``prices:`` from the config
over the packaged table for its kind (:meth:`PriceTable.pricing`), which is also how a team
prices a local or scripted model (free unless priced). A model neither knows is never silently
free: :meth:`Pricing.cost` says the price is unknown (the response's ``cost_unknown``, the
trace's), and :func:`warn_unknown` logs it once at start-up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from tether.types import Usage

if TYPE_CHECKING:
    from tether.config.models import ProviderConfig, TetherConfig

log = logging.getLogger("tether.pricing")

FREE_KINDS = frozenset({"local", "scripted"})
PER_TOKENS = 1_000_000
_BOUNDARY = "-:@"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens: input, output, and the cached part of the input (default: the input
    price) and the reasoning part of the output (default: the output price)."""

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None

    def cost(self, usage: Usage) -> float:
        """USD for ``usage``: its cached input tokens (part of ``input_tokens``) and reasoning
        tokens (part of ``output_tokens``) at their own prices."""
        cached = min(max(usage.cached_input_tokens, 0), usage.input_tokens)
        reasoning = min(max(usage.reasoning_tokens, 0), usage.output_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        reasoning_price = self.output if self.reasoning is None else self.reasoning
        usd = (
            (usage.input_tokens - cached) * self.input
            + cached * cached_price
            + (usage.output_tokens - reasoning) * self.output
            + reasoning * reasoning_price
        )
        return usd / PER_TOKENS

    @property
    def most_per_token(self) -> tuple[float, float]:
        """The dearest input and output prices (what a worst case is priced at)."""
        return (
            max(self.input, self.cached_input or 0.0),
            max(self.output, self.reasoning or 0.0),
        )


FREE = Price(0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Priced:
    """What a call cost: ``usd``, and whether the model's price is ``known`` (when it is not,
    ``usd`` is 0.0 and the trace says the cost is unknown)."""

    usd: float
    known: bool = True


def _lookup(table: Mapping[str, Price], model: str) -> Price | None:
    """``model``'s price in ``table`` (lower-cased names): exact, else the longest listed
    prefix that ends at a boundary (``-``, ``:``, ``@``)."""
    name = model.lower()
    found = table.get(name)
    if found is not None:
        return found
    best = ""
    for listed in table:
        if len(listed) > len(best) and name.startswith(listed) and name[len(listed)] in _BOUNDARY:
            best = listed
    return table[best] if best else None


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


class Pricing:
    """One provider's prices: the ``prices:`` its config declares, over the packaged table for
    its kind; models of a ``local`` or ``scripted`` provider are free unless declared."""

    def __init__(self, kind: str, table: PriceTable, declared: Mapping[str, Price]) -> None:
        self.kind = kind
        self._table = table
        self._declared = {model.lower(): price for model, price in declared.items()}

    def price(self, model: str) -> Price | None:
        """The model's price; None when neither the config nor the packaged table knows it."""
        declared = _lookup(self._declared, model)
        if declared is not None:
            return declared
        return self._table.price_for(self.kind, model) if self.kind else None

    def cost(self, usage: Usage, model: str, *, fallback: str | None = None) -> Priced:
        """What ``usage`` cost on ``model`` (the model the upstream named), else on
        ``fallback`` (the model asked for); unknown when neither has a price."""
        price = self.price(model) if model else None
        if price is None and fallback:
            price = self.price(fallback)
        return Priced(0.0, known=False) if price is None else Priced(price.cost(usage))


class PriceTable:
    """Prices per provider kind and model. Build with :meth:`load` (the bundled table)."""

    def __init__(
        self,
        models: Mapping[str, Mapping[str, Price]],
        *,
        version: str = "",
        source: str = "",
        retrieved: str = "",
    ) -> None:
        self._models = {
            kind: {m.lower(): p for m, p in table.items()} for kind, table in models.items()
        }
        self.version = version
        self.source = source
        self.retrieved = retrieved
        self._providers: dict[str, Pricing] = {}

    @classmethod
    def load(cls, path: str | None = None) -> PriceTable:
        """The bundled table (or a JSON file of the same shape at ``path``)."""
        if path is None:
            text = resources.files("tether").joinpath("data", "prices.json").read_text("utf-8")
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        return cls.from_dict(json.loads(text), origin=path or "tether/data/prices.json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "<dict>") -> PriceTable:
        """Parse the JSON shape; a malformed entry raises ValueError naming it."""
        models: dict[str, dict[str, Price]] = {}
        for kind, table in dict(data.get("models") or {}).items():
            models[kind] = {}
            for model, raw in dict(table).items():
                try:
                    models[kind][model] = Price(
                        float(raw["input"]),
                        float(raw["output"]),
                        _optional(raw.get("cached_input")),
                        _optional(raw.get("reasoning")),
                    )
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise ValueError(
                        f"{origin}: models.{kind}.{model} needs numeric 'input' and 'output' "
                        f"(and optionally 'cached_input', 'reasoning'; USD per 1M tokens), "
                        f"got {raw!r}"
                    ) from exc
        return cls(
            models,
            version=str(data.get("version", "")),
            source=str(data.get("source", "")),
            retrieved=str(data.get("retrieved", "")),
        )

    def price_for(self, provider_kind: str, model: str) -> Price | None:
        """The packaged price of a model of that provider kind, by exact name or longest
        listed prefix (free for ``local`` and ``scripted``); None when unknown."""
        if provider_kind in FREE_KINDS:
            return FREE
        table = self._models.get(provider_kind)
        return _lookup(table, model) if table else None

    def configured(self, providers: Mapping[str, ProviderConfig]) -> PriceTable:
        """This table with each declared provider's ``prices:`` over it: what
        :meth:`pricing` and :meth:`price_of` answer for those providers by name."""
        table = PriceTable(
            self._models, version=self.version, source=self.source, retrieved=self.retrieved
        )
        table._providers = {name: self.pricing(name, config) for name, config in providers.items()}
        return table

    def pricing(self, provider: str, config: ProviderConfig | None = None) -> Pricing:
        """The prices of the provider named ``provider``: ``config``'s ``prices:`` over the
        packaged table for its kind. Without ``config``, as :meth:`configured` declared it;
        a provider nobody declared knows no price (its models' costs are unknown)."""
        if config is None:
            return self._providers.get(provider) or Pricing("", self, {})
        declared = {
            model: Price(
                p.input_per_mtok, p.output_per_mtok, p.cached_input_per_mtok, p.reasoning_per_mtok
            )
            for model, p in config.prices.items()
        }
        return Pricing(config.kind, self, declared)

    def price_of(self, ref: str) -> Price | None:
        """The price of ``provider:model`` (None when unknown): see :meth:`configured`."""
        provider, _, model = ref.partition(":")
        return self.pricing(provider).price(model)

    def cost(
        self, provider_kind: str, model: str, usage: Usage, *, fallback: str | None = None
    ) -> float:
        """USD for ``usage`` on ``model`` (else on ``fallback``); 0.0 for unknown or local."""
        price = self.price_for(provider_kind, model)
        if price is None and fallback:
            price = self.price_for(provider_kind, fallback)
        return 0.0 if price is None else price.cost(usage)

    def models(self, provider_kind: str) -> list[str]:
        """The model names listed for a provider kind."""
        return sorted(self._models.get(provider_kind, {}))


def unknown_models(config: TetherConfig, prices: PriceTable) -> list[str]:
    """The ``provider:model`` references of every feature's chain that have no price (neither
    in the provider's ``prices:`` nor in the packaged table), each once, in config order."""
    configured = prices.configured(config.providers)
    unknown: list[str] = []
    for feature in config.features.values():
        for ref in (ref for chain in feature.chains for ref in chain):
            if ref not in unknown and configured.price_of(ref) is None:
                unknown.append(ref)
    return unknown


def warn_unknown(config: TetherConfig, prices: PriceTable) -> list[str]:
    """Log one warning per model of any feature's chain that has no price (called once at
    start-up); returns them. Their calls are traced with ``cost_unknown`` and cost budgets
    treat them as ``budgets.unknown_price`` says."""
    unknown = unknown_models(config, prices)
    for ref in unknown:
        provider = ref.partition(":")[0]
        log.warning(
            "model %s has no price: its calls are traced as cost unknown (counted as $0.00) "
            "and cost budgets follow budgets.unknown_price; price it under "
            "providers.%s.prices (input_per_mtok, output_per_mtok)",
            ref,
            provider,
        )
    return unknown

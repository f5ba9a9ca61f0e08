"""The price table: what a model's tokens cost, from versioned package data.

``tether/data/prices.json`` names its source, commit and retrieval date; prices are USD per 1M
tokens, keyed by provider kind, then by model. A dated snapshot such as
``gpt-4o-mini-2024-07-18`` resolves to its base model (``gpt-4o-mini``) by the longest listed
prefix. Unknown models cost 0.0 (:meth:`PriceTable.price_for` returns None so callers can tell);
models that run locally (``local``, ``scripted``) are free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from tether.types import Usage

FREE_KINDS = frozenset({"local", "scripted"})
PER_TOKENS = 1_000_000
_BOUNDARY = "-:@"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M input and output tokens."""

    input: float
    output: float

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / PER_TOKENS


FREE = Price(0.0, 0.0)


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
                    models[kind][model] = Price(float(raw["input"]), float(raw["output"]))
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(
                        f"{origin}: models.{kind}.{model} needs numeric 'input' and 'output' "
                        f"(USD per 1M tokens), got {raw!r}"
                    ) from exc
        return cls(
            models,
            version=str(data.get("version", "")),
            source=str(data.get("source", "")),
            retrieved=str(data.get("retrieved", "")),
        )

    def price_for(self, provider_kind: str, model: str) -> Price | None:
        """The model's price, by exact name or longest listed prefix; None when unknown."""
        if provider_kind in FREE_KINDS:
            return FREE
        table = self._models.get(provider_kind)
        if not table:
            return None
        name = model.lower()
        found = table.get(name)
        if found is not None:
            return found
        best = ""
        for listed in table:
            if (
                len(listed) > len(best)
                and name.startswith(listed)
                and name[len(listed)] in _BOUNDARY
            ):
                best = listed
        return table[best] if best else None

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

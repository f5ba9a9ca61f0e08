"""Build providers from config (HTTP and local providers are imported only when declared); an
HTTP provider gets the transport its ``transport`` field names (``default`` or ``lean``), and
every provider prices its models with its ``prices:`` over the packaged table
(:meth:`~tether.providers.pricing.PriceTable.pricing`)."""

from __future__ import annotations

from tether.config.models import (
    AnthropicProviderConfig,
    LocalProviderConfig,
    OpenAIProviderConfig,
    ProviderConfig,
    ScriptedProviderConfig,
)
from tether.providers.base import Provider
from tether.providers.pricing import PriceTable
from tether.providers.transports import transport_for


def build_provider(name: str, config: ProviderConfig, prices: PriceTable) -> Provider:
    if isinstance(config, LocalProviderConfig):
        from tether.providers.local import LocalProvider

        return LocalProvider(config, name, prices.pricing(name, config))
    if isinstance(config, OpenAIProviderConfig):
        from tether.providers.openai import OpenAIProvider

        return OpenAIProvider(config, name, prices, transport=transport_for(config))
    if isinstance(config, AnthropicProviderConfig):
        from tether.providers.anthropic import AnthropicProvider

        return AnthropicProvider(config, name, prices, transport=transport_for(config))
    if isinstance(config, ScriptedProviderConfig):
        from tether.providers.scripted import ScriptedProvider

        return ScriptedProvider.from_config(name, config, prices.pricing(name, config))
    raise TypeError(f"unknown provider config {type(config).__name__}")

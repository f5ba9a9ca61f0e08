"""The bundled price table: provenance, lookup by longest prefix, unknown and free models."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tether.providers.pricing import FREE, Price, PriceTable
from tether.types import Usage


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_table_names_its_source_and_date(table: PriceTable) -> None:
    assert "litellm" in table.source and "model_prices_and_context_window.json" in table.source
    assert dt.date.fromisoformat(table.retrieved) <= dt.date.today()
    assert table.version


def test_bundled_json_is_per_million_tokens() -> None:
    raw = (Path(__file__).parents[2] / "src/tether/data/prices.json").read_text("utf-8")
    data = json.loads(raw)
    assert list(data)[:4] == ["version", "source", "source_commit", "retrieved"]
    assert data["unit"] == "USD per 1M tokens"
    for kind, models in data["models"].items():
        for name, price in models.items():
            if name.startswith("text-embedding-"):  # input tokens only
                assert 0 < price["input"] < 1 and price["output"] == 0, (kind, name)
            else:
                assert 0 < price["input"] <= price["output"] < 1000, (kind, name)


@pytest.mark.parametrize(
    ("model", "per_million"),
    [
        ("text-embedding-3-small", 0.02),
        ("text-embedding-3-large", 0.13),
        ("text-embedding-ada-002", 0.10),
    ],
)
def test_embedding_models_are_priced_by_input_tokens(
    table: PriceTable, model: str, per_million: float
) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert table.cost("openai", model, usage) == pytest.approx(per_million)


OPENAI = "gpt-4o gpt-4o-mini gpt-4.1 gpt-4.1-mini gpt-4.1-nano o3-mini o4-mini gpt-3.5-turbo"
ANTHROPIC = "claude-3-5-haiku claude-3-5-sonnet claude-3-7-sonnet claude-sonnet-4 claude-opus-4"


@pytest.mark.parametrize("model", OPENAI.split())
def test_openai_models_listed(table: PriceTable, model: str) -> None:
    assert model in table.models("openai")


@pytest.mark.parametrize("model", [*ANTHROPIC.split(), "claude-haiku-4-5"])
def test_anthropic_models_listed(table: PriceTable, model: str) -> None:
    assert model in table.models("anthropic")


@pytest.mark.parametrize(
    ("kind", "model", "price"),
    [
        ("openai", "gpt-4o-mini", Price(0.15, 0.6)),
        ("openai", "gpt-4o-mini-2024-07-18", Price(0.15, 0.6)),
        ("openai", "gpt-4o-2024-08-06", Price(2.5, 10.0)),
        ("openai", "gpt-4o-2024-05-13", Price(5.0, 15.0)),  # a snapshot priced on its own
        ("openai", "GPT-4.1-Mini", Price(0.4, 1.6)),
        ("openai", "o3-mini-2025-01-31", Price(1.1, 4.4)),
        ("anthropic", "claude-3-5-haiku-20241022", Price(0.8, 4.0)),
        ("anthropic", "claude-sonnet-4-20250514", Price(3.0, 15.0)),
        ("anthropic", "claude-opus-4-1-20250805", Price(15.0, 75.0)),
        ("anthropic", "claude-haiku-4-5-20251001", Price(1.0, 5.0)),
    ],
)
def test_price_for_matches_exact_and_dated_names(
    table: PriceTable, kind: str, model: str, price: Price
) -> None:
    assert table.price_for(kind, model) == price


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("openai", "llama3.1"),
        ("openai", "gpt-4.5-preview"),  # "gpt-4" is a prefix, but not at a name boundary
        ("openai", "gpt-4oops"),
        ("anthropic", "gpt-4o"),
        ("vertex", "gemini-2.5-pro"),
    ],
)
def test_unknown_models_have_no_price_and_cost_nothing(
    table: PriceTable, kind: str, model: str
) -> None:
    assert table.price_for(kind, model) is None
    assert table.cost(kind, model, Usage(1_000, 1_000)) == 0.0


@pytest.mark.parametrize("kind", ["local", "scripted"])
def test_local_models_are_free(table: PriceTable, kind: str) -> None:
    assert table.price_for(kind, "smollm2") == FREE
    assert table.cost(kind, "smollm2", Usage(10_000, 10_000)) == 0.0


def test_cost_arithmetic(table: PriceTable) -> None:
    usage = Usage(input_tokens=2_000, output_tokens=1_000)
    assert table.cost("openai", "gpt-4o", usage) == pytest.approx(0.005 + 0.01)
    assert table.cost("anthropic", "claude-opus-4", usage) == pytest.approx(0.03 + 0.075)
    assert table.cost("openai", "gpt-4o", Usage()) == 0.0


def test_from_dict_and_custom_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    data = {"version": "x", "models": {"openai": {"my-model": {"input": 1, "output": 2}}}}
    path.write_text(json.dumps(data))
    custom = PriceTable.load(str(path))
    assert custom.version == "x"
    assert custom.cost("openai", "my-model-v2", Usage(1_000_000, 1_000_000)) == 3.0


def test_malformed_entry_names_itself() -> None:
    with pytest.raises(ValueError, match=r"models\.openai\.broken"):
        PriceTable.from_dict({"models": {"openai": {"broken": {"input": "cheap"}}}})


def test_cost_falls_back_to_the_requested_model(table: PriceTable) -> None:
    usage = Usage(1_000_000, 0)
    assert table.cost("openai", "proxy-renamed-model", usage, fallback="gpt-4o-mini") == 0.15
    assert table.cost("openai", "gpt-4o", usage, fallback="gpt-4o-mini") == 2.5


# ---------------------------------------------------------------- cached, reasoning, overrides


def test_cached_input_and_reasoning_tokens_are_priced_apart() -> None:
    price = Price(input=2.0, output=8.0, cached_input=0.5, reasoning=10.0)
    usage = Usage(
        input_tokens=1_000, output_tokens=500, cached_input_tokens=400, reasoning_tokens=200
    )
    expected = (600 * 2.0 + 400 * 0.5 + 300 * 8.0 + 200 * 10.0) / 1_000_000
    assert price.cost(usage) == pytest.approx(expected)
    # without their own prices, cached input costs input and reasoning costs output
    assert Price(2.0, 8.0).cost(usage) == pytest.approx((1_000 * 2.0 + 500 * 8.0) / 1_000_000)


def test_packaged_table_reads_optional_cached_and_reasoning() -> None:
    data = {"models": {"openai": {"m": {"input": 1, "output": 2, "cached_input": 0.25}}}}
    price = PriceTable.from_dict(data).price_for("openai", "m")
    assert price == Price(1.0, 2.0, 0.25, None)


def _provider(kind: str, prices: dict[str, Any]) -> Any:
    from pydantic import TypeAdapter

    from tether.config.models import ProviderConfig

    return TypeAdapter(ProviderConfig).validate_python({"kind": kind, "prices": prices})


def test_config_prices_override_the_packaged_table(table: PriceTable) -> None:
    config = _provider(
        "openai",
        {
            "gpt-4o-mini": {"input_per_mtok": 1.0, "output_per_mtok": 3.0},
            "house-model": {"input_per_mtok": 0.5, "cached_input_per_mtok": 0.1},
        },
    )
    pricing = table.pricing("oa", config)
    assert pricing.price("gpt-4o-mini-2024-07-18") == Price(1.0, 3.0, None, None)
    assert pricing.price("gpt-4o") == table.price_for("openai", "gpt-4o")  # not overridden
    priced = pricing.cost(Usage(1_000_000, 0, cached_input_tokens=500_000), "house-model")
    assert priced.known and priced.usd == pytest.approx(0.25 + 0.05)


@pytest.mark.parametrize("kind", ["scripted", "local"])
def test_scripted_and_local_are_free_unless_priced(table: PriceTable, kind: str) -> None:
    assert table.pricing("p", _provider(kind, {})).cost(Usage(10, 10), "any").usd == 0.0
    priced = _provider(kind, {"m": {"input_per_mtok": 1_000_000, "output_per_mtok": 0}})
    assert table.pricing("p", priced).cost(Usage(3, 10), "m").usd == pytest.approx(3.0)


def test_an_unknown_model_is_never_silently_free(table: PriceTable) -> None:
    priced = table.pricing("oa", _provider("openai", {})).cost(Usage(1_000, 1_000), "mystery-9")
    assert priced.usd == 0.0 and not priced.known
    configured = table.configured({"oa": _provider("openai", {})})
    assert configured.price_of("oa:mystery-9") is None
    assert configured.price_of("oa:gpt-4o") == table.price_for("openai", "gpt-4o")
    assert table.price_of("nobody:gpt-4o") is None  # a provider nobody declared


def test_unknown_models_warn_once_at_start_up(
    table: PriceTable, caplog: pytest.LogCaptureFixture
) -> None:
    from tether.config.models import TetherConfig
    from tether.providers.pricing import warn_unknown

    feature = {"on_failure": {"respond": "later"}}
    config = TetherConfig.model_validate(
        {
            "providers": {"oa": {"kind": "openai"}},
            "features": {
                "a": {"model": "oa:mystery-9", "fallbacks": ["oa:gpt-4o", "local:smollm2"]}
                | feature,
                "b": {"model": "oa:mystery-9"} | feature,
            },
        }
    )
    with caplog.at_level("WARNING", logger="tether.pricing"):
        assert warn_unknown(config, table) == ["oa:mystery-9"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "providers.oa.prices" in warned[0]

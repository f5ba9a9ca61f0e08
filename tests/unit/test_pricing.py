"""The bundled price table: provenance, lookup by longest prefix, unknown and free models."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

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

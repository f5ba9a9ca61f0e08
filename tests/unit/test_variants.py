"""A feature's ``variants``: named versions (another model, prompt, temperature) that a call can
ask for by name (an evaluation of a candidate), each with its own chain, trace variant and config
version; a picker that names an undeclared variant still runs the feature as declared."""

from __future__ import annotations

from typing import Any

import pytest

from tether import Tether
from tether.config import parse_config
from tether.config.models import TetherConfig
from tether.errors import ConfigError, InvalidRequest
from tether.pipeline.feature import CompiledFeature
from tether.providers.pricing import PriceTable, unknown_models
from tether.providers.scripted import ScriptedProvider
from tether.telemetry.trace import Trace
from tether.types import ModelRequest

CONFIG = """
providers:
  base: {kind: scripted}
  cand: {kind: scripted}
features:
  f:
    prompt: {system: "Be helpful.", template: "Q: {{ q }}"}
    model: base:m
    temperature: 0.2
    max_tokens: 50
    on_failure: {respond: sorry}
    variants:
      terse: {prompt: {system: "Be terse."}, temperature: 0}
      other: {model: cand:m, description: a cheaper model}
"""


def echo(request: ModelRequest) -> str:
    """The scripted answer: the request's system prompt, temperature and max_tokens."""
    system = request.messages[0].content if request.messages[0].role == "system" else None
    return f"{system}|{request.temperature}|{request.max_tokens}"


def tether_for(config: TetherConfig) -> Tether:
    def named(name: str) -> ScriptedProvider:
        return ScriptedProvider(lambda request: f"{name}:{echo(request)}", name=name)

    return Tether(config, providers={"base": named("base"), "cand": named("cand")})


async def test_a_declared_variant_runs_with_its_fields_replaced() -> None:
    tether = tether_for(parse_config(CONFIG, "t.yaml", {}))
    default = await tether.run("f", {"q": "x"})
    terse = await tether.run("f", {"q": "x"}, variant="terse")
    other = await tether.run("f", {"q": "x"}, variant="other")
    assert default.output == "base:Be helpful.|0.2|50" and default.variant == "default"
    assert terse.output == "base:Be terse.|0.0|50" and terse.variant == "terse"
    assert other.output == "cand:Be helpful.|0.2|50" and other.variant == "other"
    assert default.model == "base:m" and other.model == "cand:m"
    versions = {r.trace.config_version for r in (default, terse, other) if r.trace is not None}
    assert len(versions) == 3  # each variant is its own config version
    assert terse.trace is not None and terse.trace.variant == "terse"
    await tether.aclose()


async def test_a_variant_the_feature_does_not_declare_is_refused_by_name() -> None:
    tether = tether_for(parse_config(CONFIG, "t.yaml", {}))
    with pytest.raises(InvalidRequest, match=r"no variant 'nope'.*declared: default, terse, other"):
        await tether.run("f", {"q": "x"}, variant="nope")
    await tether.aclose()


async def test_a_picker_naming_an_undeclared_variant_runs_the_feature_as_declared() -> None:
    class Named:
        def pick(self, feature: CompiledFeature, trace: Trace) -> str:
            return str(trace.user)

    config = parse_config(CONFIG, "t.yaml", {})
    providers: dict[str, Any] = {
        "base": ScriptedProvider(echo, name="base"),
        "cand": ScriptedProvider(["from cand"], name="cand"),
    }
    tether = Tether(config, providers=providers, variant_picker=Named())
    assert (await tether.run("f", {"q": "x"}, user="other")).output == "from cand"
    unknown = await tether.run("f", {"q": "x"}, user="experiment-7")
    assert unknown.output == "Be helpful.|0.2|50" and unknown.variant == "experiment-7"
    await tether.aclose()


def bad(features: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(features, "t.yaml", {})
    return str(caught.value)


def test_variants_are_checked_like_the_feature() -> None:
    undeclared = CONFIG.replace("model: cand:m", "model: nowhere:m")
    assert "features.f.variants.other.model" in bad(undeclared)
    assert "nowhere" in bad(undeclared)
    assert "'default'" in bad(CONFIG.replace("other: {model", "default: {model"))
    assert "prompt.tone" in bad(CONFIG.replace('{system: "Be terse."}', "{tone: dry}"))
    assert "budgets" in bad(CONFIG.replace("temperature: 0}", "temperature: 0, budgets: {}}"))


def test_a_variant_that_does_not_compile_names_it() -> None:
    broken = CONFIG.replace('{system: "Be terse."}', '{template: "{{ q "}')
    with pytest.raises(ConfigError, match=r"variants\.terse"):
        Tether(parse_config(broken, "t.yaml", {})).compile()


def test_a_variants_models_are_priced_or_warned_about() -> None:
    hosted = """
providers:
  hosted: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
features:
  f:
    model: hosted:gpt-4o-mini
    on_failure: {respond: sorry}
    variants: {next: {model: hosted:no-such-model}}
"""
    config = parse_config(hosted, "t.yaml", {})
    assert unknown_models(config, PriceTable.load()) == ["hosted:no-such-model"]

"""docs/budgets.md cannot drift from the config: every YAML block in it is a complete
``tether.yaml`` that the config loader accepts, and the keys it documents exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tether.config import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "budgets.md"
ENV = {
    "OPENAI_API_KEY": "sk-test",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "TETHER_STORE_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/tether",
    "TETHER_ALERT_SECRET": "s3cret",
}


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_doc_has_yaml_examples() -> None:
    assert len(yaml_blocks()) >= 6


@pytest.mark.parametrize("block", yaml_blocks(), ids=lambda b: b.splitlines()[0][:40])
def test_every_yaml_block_is_a_config_tether_accepts(block: str) -> None:
    config = parse_config(block, "docs/budgets.md", ENV)
    assert config.features, "each example declares a feature"


def test_the_examples_cover_every_scope_and_the_state_policies() -> None:
    configs = [parse_config(block, "docs/budgets.md", ENV) for block in yaml_blocks()]
    features = [f for c in configs for f in c.features.values()]
    scopes = {scope for f in features for scope, _ in f.budgets.scopes()}
    assert scopes == {"user", "tenant", "key", "feature", "global"}
    assert any(f.budgets.request is not None for f in features)
    limits = {s for f in features for s in ("key", "user", "upstream") if getattr(f.rate_limits, s)}
    assert limits == {"key", "user", "upstream"}
    assert any(f.cache is not None for f in features)
    assert {c.state.backend for c in configs} == {"memory", "redis"}
    assert any(c.alerts.webhook for c in configs)
    assert any(p.prices for c in configs for p in c.providers.values() if hasattr(p, "prices"))

"""docs/openai-compatibility.md cannot fall behind the gateway: every OpenAI endpoint the
gateway documents in its OpenAPI document is a row of the doc's endpoint table."""

from __future__ import annotations

import re
from pathlib import Path

from tether.gateway.openapi import build_document

DOC = Path(__file__).resolve().parents[2] / "docs" / "openai-compatibility.md"
TETHER_OWN = ("/v1/features/",)  # tether's native API, described in the README


def placeholders_blank(text: str) -> str:
    return re.sub(r"\{[^}/]*\}", "{}", text)


def test_every_openai_endpoint_of_the_gateway_is_in_the_table() -> None:
    table = DOC.read_text(encoding="utf-8").split("## Endpoints", 1)[1].split("\n## ", 1)[0]
    rows = placeholders_blank(table)
    served = [
        f"`{method.upper()} {placeholders_blank(path)}`"
        for path, item in build_document()["paths"].items()
        if path.startswith("/v1/") and not path.startswith(TETHER_OWN)
        for method in item
    ]
    assert len(served) >= 7
    missing = [endpoint for endpoint in served if endpoint not in rows]
    assert not missing, f"add these to the endpoint table of {DOC.name}: {missing}"

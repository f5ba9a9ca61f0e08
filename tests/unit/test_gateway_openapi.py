"""The gateway's OpenAPI document: valid OpenAPI 3.1, and it describes every route the app
serves (a route added without documentation fails here)."""

from __future__ import annotations

from typing import Any

import schemathesis
from jsonschema import Draft202012Validator

from tether.config.loader import parse_config
from tether.gateway.app import create_app
from tether.gateway.openapi import build_document
from tether.gateway.runtime import GatewaySettings

CONFIG = """\
providers:
  fake: {kind: scripted}
features:
  assistant:
    model: fake:m
    on_failure: {respond: "unavailable"}
"""
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def served_routes() -> set[tuple[str, str]]:
    app = create_app(GatewaySettings(config=parse_config(CONFIG, "tether.yaml", {})))
    return {*app.exact, *((r.method, r.path) for r in app.patterns)}


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1() -> None:
    document = build_document()
    assert document["openapi"].startswith("3.1.")
    # schemathesis checks the document against the OpenAPI 3.1 meta-schema (raises on any
    # violation); the meta-schema leaves the JSON Schemas inside unchecked, so check those too
    schemathesis.openapi.from_dict(document).validate()
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_served_route_is_documented_and_nothing_else() -> None:
    served = served_routes()
    assert ("GET", "/openapi.json") in served
    assert documented_routes(build_document()) == served


def test_every_error_response_is_the_one_envelope() -> None:
    document = build_document()
    responses = document["components"]["responses"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if not 400 <= int(status) < 500:
                    continue
                name = response["$ref"].rsplit("/", 1)[-1]
                schema = responses[name]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (method, path)
    envelope = document["components"]["schemas"]["ErrorDetail"]
    assert set(envelope["required"]) == {"message", "type", "param", "code"}


def test_request_schemas_come_from_the_wire_models() -> None:
    schemas = build_document()["components"]["schemas"]
    chat = schemas["ChatRequest"]
    assert chat["required"] == ["model", "messages"]
    assert chat["properties"]["messages"]["items"] == {"$ref": "#/components/schemas/WireMessage"}
    assert schemas["NativeRunRequest"]["additionalProperties"] is False
    refs = _refs(build_document())
    assert refs and all(r.startswith("#/components/") for r in refs)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        here = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return here + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []

"""The failure path's answer to a request that needs structured output or a tool call.

A degraded text such as "Sorry, try again later" is a fine answer to a chat message and a broken
one to ``response_format: json_schema``: instructor, pydantic-ai, the Agents SDK and DSPy fail to
parse it, and retry. So when only the failure path is left, the answer follows the request:

======================================================  ======================================
the request                                             the failure answer
======================================================  ======================================
``tools`` with ``tool_choice`` a named function         a call of that tool, ``respond_json``
                                                        as its arguments (checked against the
                                                        tool's ``parameters``)
``tools`` with ``tool_choice: required``                a call of the first tool whose
                                                        ``parameters`` ``respond_json`` fits
``response_format`` ``json_schema``                     ``respond_json`` as JSON text, checked
                                                        against the schema
``response_format`` ``json_object``                     ``respond_json`` as JSON text (it must
                                                        be an object)
anything else (``tool_choice`` ``auto`` or unset too)   ``respond`` (else ``respond_json`` as
                                                        JSON text)
======================================================  ======================================

``tool_choice: auto`` (or unset) lets a model answer in text instead of calling a tool, and
every agent framework reads such a text as the model's reply: the ``respond`` text is a valid
answer there. A ``respond_json`` that does not fit, or none declared, is
:class:`~tether.errors.StructuredOutputUnavailable` (HTTP 424 ``structured_output_unavailable``):
an error the client recognises instead of a text its parser chokes on.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from tether.types import ModelRequest, ToolCall

Need = Literal["tool_call", "json_schema", "json_object"]


@dataclass(frozen=True, slots=True)
class StaticAnswer:
    """What the failure path answers: ``text`` (content), or a ``tool_call`` (text empty)."""

    text: str
    tool_call: ToolCall | None = None

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_call is not None else "stop"


class DoesNotFit(ValueError):
    """``respond_json`` cannot answer the request; the message says why."""


def structured_need(request: ModelRequest) -> Need | None:
    """What a request needs its answer to be, beyond text: a tool call (``tool_choice``
    ``required`` or a named function, with tools), JSON matching a schema, a JSON object, or
    nothing (None: any text will do)."""
    choice = request.tool_choice
    if request.tools and (choice == "required" or isinstance(choice, dict)):
        return "tool_call"
    kind = (request.response_format or {}).get("type")
    if kind == "json_schema":
        return "json_schema"
    if kind == "json_object":
        return "json_object"
    return None


def static_answer(
    request: ModelRequest, respond: str | None, respond_json: Any
) -> tuple[StaticAnswer, Need | None]:
    """The feature's static failure answer shaped for ``request``, and what the request
    needed. Raises :class:`DoesNotFit` when it needs structure that ``respond_json`` (None:
    not declared) cannot give."""
    need = structured_need(request)
    if need is None:
        text = respond if respond is not None else _dumps(respond_json)
        return StaticAnswer(text), None
    if respond_json is None:
        raise DoesNotFit(
            f"the request needs {_WHAT[need]} and the feature declares no "
            "on_failure.respond_json; declare one that fits the request's schema"
        )
    if need == "tool_call":
        return StaticAnswer("", _tool_call(request, respond_json)), need
    if need == "json_object":
        if not isinstance(respond_json, dict):
            raise DoesNotFit(
                "the request asks for a JSON object (response_format json_object) and "
                f"on_failure.respond_json is a {type(respond_json).__name__}; make it an object"
            )
        return StaticAnswer(_dumps(respond_json)), need
    spec = (request.response_format or {}).get("json_schema") or {}
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if schema is not None:
        _check(respond_json, schema, "response_format.json_schema.schema")
    return StaticAnswer(_dumps(respond_json)), need


_WHAT: dict[Need, str] = {
    "tool_call": "a tool call (tool_choice required or a named function)",
    "json_schema": "JSON matching its schema (response_format json_schema)",
    "json_object": "a JSON object (response_format json_object)",
}


def _tool_call(request: ModelRequest, value: Any) -> ToolCall:
    """A call of the named tool (or, for ``required``, the first tool ``value`` fits) with
    ``value`` as its arguments."""
    functions = [
        t["function"]
        for t in request.tools or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    choice = request.tool_choice
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if named is not None:
        functions = [f for f in functions if f.get("name") == named]
        if not functions:
            raise DoesNotFit(f"tool_choice names the tool {named!r}, which tools do not hold")
    problems: list[str] = []
    for function in functions:
        name = str(function.get("name", ""))
        try:
            _check(value, function.get("parameters") or {}, f"the {name!r} tool's parameters")
        except DoesNotFit as exc:
            problems.append(str(exc))
            continue
        return ToolCall(f"call_{uuid.uuid4().hex[:24]}", name, _dumps(value))
    if not problems:
        raise DoesNotFit("the request's tools hold no function to call")
    raise DoesNotFit("; ".join(problems))


def _check(value: Any, schema: Any, where: str) -> None:
    """``value`` against a JSON Schema; DoesNotFit naming the first problem."""
    import jsonschema

    if not isinstance(schema, dict):
        raise DoesNotFit(f"{where} is not a JSON Schema object")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise DoesNotFit(f"{where} is not a valid JSON Schema ({exc.message})") from None
    error = jsonschema.exceptions.best_match(cls(schema).iter_errors(value))
    if error is not None:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        raise DoesNotFit(
            f"on_failure.respond_json does not match {where}: at {path}: {error.message}"
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)

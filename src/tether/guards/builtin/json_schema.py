"""``json_schema``: the output must be JSON valid against a JSON Schema or a pydantic model.

Repair first (``repair: true``): a fenced code block is unwrapped, prose before and after the
JSON value is dropped. What is still invalid fails with a precise message (JSON path and
reason) that the runner turns into a re-ask. A passing verdict carries the parsed value
(``dict``/``list``, or the pydantic model instance) and, when repaired, the canonical JSON text.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from tether.config.guards import JsonSchemaOptions
from tether.errors import ConfigError
from tether.guards.base import GuardContext, Verdict


def candidates(text: str) -> list[str]:
    """Texts that may hold the JSON value, most literal first."""
    out = [text.strip()]
    fence = re.search(r"```[\w-]*\s*\n?(.*?)```", text, re.DOTALL)
    if fence is not None:
        out.append(fence.group(1).strip())
    return out


def extract_json(text: str, repair: bool = True) -> tuple[Any, bool]:
    """The JSON value in ``text`` and whether repair was needed. Raises ValueError."""
    try:
        return json.loads(text), False
    except json.JSONDecodeError as exc:
        first_error = exc
    if not repair:
        raise ValueError(f"not valid JSON: {first_error.msg} at char {first_error.pos}")
    decoder = json.JSONDecoder()
    for candidate in candidates(text):
        starts = [m.start() for m in re.finditer(r"[\[{]", candidate)][:20]
        for start in starts:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            return value, True
    raise ValueError(f"no JSON value found: {first_error.msg} at char {first_error.pos}")


def import_object(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {ref!r}: {exc}; check the module:name spelling") from None
    return obj


class JsonSchemaGuard:
    """Validates (and repairs) JSON output; the typed result is ``Verdict.value``."""

    streaming = "final"  # partial JSON is meaningless: check once the stream has ended

    def __init__(self, options: JsonSchemaOptions) -> None:
        self.options = options
        self._model: type[BaseModel] | None = None
        self._validator: Any = None
        if options.model is not None:
            model = import_object(options.model)
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigError(f"json_schema model {options.model!r} is not a pydantic model")
            self._model = model
            self.schema: dict[str, Any] = model.model_json_schema()
        else:
            import jsonschema

            assert options.json_schema is not None
            self.schema = options.json_schema
            cls = jsonschema.validators.validator_for(self.schema)
            try:
                cls.check_schema(self.schema)
            except jsonschema.SchemaError as exc:
                raise ConfigError(f"json_schema: invalid schema: {exc.message}") from None
            self._validator = cls(self.schema)

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        try:
            value, repaired = extract_json(text, self.options.repair)
        except ValueError as exc:
            return Verdict.fail(str(exc))
        ok, result = self._validate(value)
        if not ok:
            return Verdict.fail(str(result), score=0.9)
        canonical = json.dumps(value, ensure_ascii=False) if repaired else None
        return Verdict.ok(rewritten=canonical, value=result)

    def _validate(self, value: Any) -> tuple[bool, Any]:
        """(True, the typed value) or (False, an error message)."""
        if self._model is not None:
            try:
                return True, self._model.model_validate(value)
            except ValidationError as exc:
                problems = [
                    f"at $.{'.'.join(str(p) for p in e['loc']) or ''}: {e['msg']}"
                    for e in exc.errors()[:5]
                ]
                return False, "does not match the schema: " + "; ".join(problems)
        import jsonschema

        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
        if not errors:
            return True, value
        best = jsonschema.exceptions.best_match(errors)
        assert best is not None
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in best.path)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return False, f"does not match the schema: at {path}: {best.message}{more}"

    def reask_message(self, verdict: Verdict) -> str:
        """What the model is told when asked again."""
        schema = json.dumps(self.schema, ensure_ascii=False)
        return (
            f"Your previous answer was rejected: {verdict.reason}. Answer again with only a "
            f"JSON value (no prose, no code fence) that matches this JSON Schema: {schema}"
        )

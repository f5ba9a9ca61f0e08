"""What the scorer modules share: a scorer made of a function, ``{{var}}`` templates in assert
values (rendered with the case's vars, as promptfoo renders them with nunjucks), ``file://``
values, JavaScript's ``String(x)`` (promptfoo compares ``String(value)``), and the error a bad
assert raises at build time."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.errors import DatasetError
from tether.evals.types import Assertion, Case, Output, Score, ScoringContext

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

Check = Callable[[Case, Output], Score]


@dataclass(slots=True)
class FunctionScorer:
    """A scorer that is one synchronous check. ``handles_not``: the check applies the
    assertion's ``not-`` itself (promptfoo's own rule for that type, see :func:`outcome`), so
    the registry does not invert it again."""

    name: str
    check: Check
    handles_not: bool = True

    async def score(self, case: Case, output: Output) -> Score:
        return self.check(case, output)


def verdict(passed: bool, reason: str = "") -> Score:
    """A pass/fail score (1 or 0); promptfoo's reason for a pass is "Assertion passed"."""
    return Score(1.0 if passed else 0.0, passed, reason or ("Assertion passed" if passed else ""))


def outcome(assertion: Assertion, holds: bool, expectation: str) -> Score:
    """promptfoo's verdict on a condition: passed when ``holds`` (or, under ``not-``, when it
    does not); the reason of a failure says what was expected (``expectation``, e.g.
    ``contain "paris"``)."""
    passed = holds != assertion.negated
    negation = "not " if assertion.negated else ""
    return verdict(passed, "" if passed else f"Expected output to {negation}{expectation}")


def bad(assertion: Assertion, problem: str) -> DatasetError:
    """A DatasetError naming the assert and what to fix."""
    return DatasetError(f"assert {assertion.type!r}: {problem}")


class Templates:
    """Renders ``{{ var }}`` in assert values with a case's vars (unknown vars render empty, no
    escaping: promptfoo's nunjucks settings). The template engine is created on first use, so
    the many scorers of values without a template stay small."""

    __slots__ = ("_env",)

    def __init__(self) -> None:
        self._env: SandboxedEnvironment | None = None

    @property
    def env(self) -> SandboxedEnvironment:
        if self._env is None:
            from jinja2.sandbox import SandboxedEnvironment

            self._env = SandboxedEnvironment(
                autoescape=False, keep_trailing_newline=True, finalize=_nunjucks_value
            )
        return self._env

    @staticmethod
    def has(value: Any) -> bool:
        """Whether ``value`` (a string or a list of them) holds a template."""
        if isinstance(value, str):
            return "{{" in value or "{%" in value
        if isinstance(value, list):
            return any(Templates.has(v) for v in value)
        return False

    def check(self, assertion: Assertion, value: Any) -> None:
        """Raise DatasetError when a template in ``value`` does not parse."""
        from jinja2 import TemplateSyntaxError

        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and self.has(text):
                try:
                    self.env.parse(text)
                except TemplateSyntaxError as exc:
                    raise bad(assertion, f"template {text!r} does not parse: {exc}") from exc

    def render(self, value: Any, variables: Mapping[str, Any]) -> Any:
        """``value`` with its strings (or a list's strings) rendered; other values unchanged."""
        if isinstance(value, str):
            if not self.has(value):
                return value
            return self.env.from_string(value).render(dict(variables))
        if isinstance(value, list):
            return [self.render(v, variables) for v in value]
        return value


def _nunjucks_value(value: Any) -> str:
    """How nunjucks prints a value: null as nothing, the rest as JavaScript's ``String``."""
    return "" if value is None else js_string(value)


def load_file(assertion: Assertion, ref: str, base_dir: Path) -> Any:
    """A ``file://`` value as promptfoo reads it: ``.json``/``.yaml``/``.yml`` parsed, ``.txt``
    stripped text; a relative path is relative to the dataset's folder."""
    import yaml

    path = Path(ref[len("file://") :])
    path = path if path.is_absolute() else base_dir / path
    if path.suffix not in {".json", ".yaml", ".yml", ".txt"}:
        raise bad(assertion, f"{ref}: a file value is .json, .yaml, .yml or .txt")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise bad(assertion, f"cannot read {path} ({exc.strerror}); check the path") from exc
    if path.suffix == ".txt":
        return text.strip()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise bad(assertion, f"{path} is not valid JSON/YAML: {exc}") from exc


def file_value(assertion: Assertion, ctx: ScoringContext) -> Any:
    """The assertion's value with ``file://`` references (also inside a list) loaded."""
    value = assertion.value
    if isinstance(value, str) and value.startswith("file://"):
        return load_file(assertion, value, ctx.base_dir)
    if isinstance(value, list):
        return [
            load_file(assertion, v, ctx.base_dir)
            if isinstance(v, str) and v.startswith("file://")
            else v
            for v in value
        ]
    return value


def js_string(value: Any) -> str:
    """JavaScript's ``String(value)`` for JSON-like values."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def json_loads(text: str) -> Any:
    """``JSON.parse``: strict JSON (no NaN / Infinity). Raises ValueError."""

    def reject(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=reject)


def require_threshold(assertion: Assertion, what: str) -> float:
    if assertion.threshold is None:
        raise bad(
            assertion,
            f"needs a threshold ({what}), e.g. {{type: {assertion.base_type}, threshold: 1.5}}",
        )
    return assertion.threshold

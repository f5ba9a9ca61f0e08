"""Scorers written as code: promptfoo's ``python`` assert, and tether's custom scorers.

``python`` (promptfoo's contract): the value is an expression (``len(output) < 80``), a body
with ``return`` (several lines), or ``file://check.py`` / ``file://check.py:function`` (default
function ``get_assert``), called as ``fn(output, context)`` with the answer text and
``context = {"prompt", "vars", "test", "config"}``. It returns a bool (or ``"true"``/
``"false"``), a number (the score: it passes when ``>= threshold``, without a threshold when
``> 0``) or a mapping ``{pass, score, reason}`` (``pass_`` is read as ``pass``; a ``threshold``
fails a lower score). Anything else, or an exception, fails the case with the error as reason.
Inline code is a template (``{{ var }}``) like every string value.

Custom scorers: ``{type: custom, value: "package.module:function"}`` (``--scorer
package.module:function``), or an entry point of group ``tether.scorers`` whose name becomes
an assert type. The object named is

* a function ``fn(case, output, **kwargs) -> Score | bool | float | dict`` (sync or async);
  ``kwargs`` are the assert's other keys, and, for an entry point, ``value`` when it has one;
* or a class, instantiated with those ``kwargs``, whose ``score(case, output)`` is used (any
  object with ``score`` is used as is).

A custom scorer may return a :class:`~tether.evals.types.Score`, a bool (scores 1 or 0), a
number (the score; it passes like ``python``'s: ``>= threshold``, else ``> 0``) or a mapping
``{pass, score, reason}`` (each optional: a missing score is 1 or 0, a missing pass follows
the score). A function that is not async runs in a worker thread, off the event loop; one that
raises fails the case with its error as the reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.errors import ConfigError
from tether.evals.scorers.base import Factory
from tether.evals.scorers.common import Templates, bad, verdict
from tether.evals.types import Assertion, Case, Output, Score, Scorer, ScoringContext

FLOAT_PREFIX = re.compile(r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
RESULT_SHAPE = "return a bool, a number, or a {pass, score, reason} mapping"


def _number_result(result: Any, threshold: float | None) -> Score:
    """promptfoo's ``parseFloat(String(result))`` path."""
    match = FLOAT_PREFIX.match(str(result))
    if match is None:
        raise ValueError(f"the code must {RESULT_SHAPE}; it returned {result!r}")
    score = float(match.group())
    passed = score >= threshold if threshold is not None else score > 0
    return Score(min(1.0, max(0.0, score)), passed, "Assertion passed" if passed else "")


def _mapping_result(result: Mapping[str, Any], threshold: float | None) -> Score:
    data = dict(result)
    if "pass_" in data and "pass" not in data:
        data["pass"] = data["pass_"]
    passed, score, reason = data.get("pass"), data.get("score"), data.get("reason")
    if (
        not isinstance(passed, bool)
        or not isinstance(score, (int, float))
        or isinstance(score, bool)
        or not isinstance(reason, str)
    ):
        raise ValueError(f"the code must {RESULT_SHAPE}; it returned {result!r}")
    if threshold is not None and score < threshold:
        passed = False
        low = f"score {score:g} is less than threshold {threshold:g}"
        reason = f"{low}: {reason}" if reason else low
    return Score(min(1.0, max(0.0, float(score))), passed, reason)


def python_result(result: Any, threshold: float | None) -> Score:
    """A python assert's return value as promptfoo reads it. Raises ValueError."""
    if isinstance(result, bool):
        return verdict(result, "" if result else "Python code returned false")
    if isinstance(result, str) and result.lower() in ("true", "false"):
        passed = result.lower() == "true"
        return verdict(passed, "" if passed else "Python code returned false")
    if isinstance(result, str) and result.startswith("{"):
        import json

        return _mapping_result(json.loads(result), None)  # promptfoo: no threshold here
    if isinstance(result, Mapping):
        return _mapping_result(result, threshold)
    if result is None or isinstance(result, (list, tuple)):
        raise ValueError(f"the code must {RESULT_SHAPE}; it returned {result!r}")
    return _number_result(result, threshold)


def custom_result(result: Any, threshold: float | None) -> Score:
    """A custom scorer's return value: a Score as is, else read like a python assert's."""
    if isinstance(result, Score):
        return result
    if isinstance(result, Mapping) and "pass" in result and "score" not in result:
        result = {**result, "score": 1.0 if result["pass"] else 0.0}
    if isinstance(result, Mapping) and "score" in result and "pass" not in result:
        score = result["score"]
        passed = score >= threshold if threshold is not None else score > 0
        result = {**result, "pass": bool(passed)}
    if isinstance(result, Mapping):
        result = {"reason": "", **result}
    return python_result(result, threshold)


def _indent(body: str) -> str:
    """promptfoo's wrapping: each line of a multi-line body indented like its first indented
    line (default four spaces); a one-liner becomes ``return <expression>``."""
    if "\n" not in body:
        return f"    return {body}"
    match = re.search(r"^(?!\s*$)[ \t]+", body, re.MULTILINE)
    indent = match.group() if match else "    "
    return "\n".join(indent + line for line in body.split("\n"))


def compile_inline(assertion: Assertion, code: str) -> Callable[..., Any]:
    """The ``main(output, context)`` of an inline python assert. Raises DatasetError."""
    source = f"import json\n\ndef main(output, context):\n{_indent(code)}\n"
    try:
        compiled = compile(source, f"<python assert {assertion.name}>", "exec")
    except SyntaxError as exc:
        raise bad(assertion, f"the code does not compile: {exc.msg} (line {exc.lineno})") from exc
    namespace: dict[str, Any] = {}
    exec(compiled, namespace)  # the dataset's own assert code, run as promptfoo runs it
    main: Callable[..., Any] = namespace["main"]
    return main


def load_python_file(assertion: Assertion, ref: str, base_dir: Path) -> Callable[..., Any]:
    """``file://path.py[:function]`` (default ``get_assert``) loaded. Raises DatasetError."""
    spec_text = ref[len("file://") :]
    path_text, _, name = spec_text.partition(":")
    path = Path(path_text)
    path = path if path.is_absolute() else base_dir / path
    if path.suffix != ".py":
        raise bad(assertion, f"{ref}: tether runs python files (.py) only")
    if not path.is_file():
        raise bad(assertion, f"{ref}: no file {path}; paths are relative to the dataset")
    module_name = f"tether_eval_assert_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise bad(assertion, f"{ref}: cannot load {path} as a python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # promptfoo's wrapper imports siblings this way
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any error in user code is reported as a bad assert
        raise bad(assertion, f"{ref}: importing {path} failed: {exc!r}") from exc
    finally:
        sys.path.remove(str(path.parent))
    obj: Any = module
    for part in (name or "get_assert").split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise bad(assertion, f"{ref}: {path.name} has no function {name or 'get_assert'!r}")
    fn: Callable[..., Any] = obj
    return fn


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``: awaited when async, else run in a worker thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def python_context(case: Case, assertion: Assertion) -> dict[str, Any]:
    """The ``context`` a python assert gets (promptfoo's keys tether can fill)."""
    return {
        "prompt": None,
        "vars": dict(case.vars),
        "test": {
            "vars": dict(case.vars),
            "assert": [a.to_dict() for a in case.asserts],
            "description": case.description,
            "metadata": dict(case.metadata),
        },
        "config": assertion.options.get("config"),
    }


@dataclass(slots=True)
class PythonScorer:
    name: str
    assertion: Assertion
    fn: Callable[..., Any] | None  # None: inline code with a template, compiled per case
    templates: Templates = field(default_factory=Templates)

    async def score(self, case: Case, output: Output) -> Score:
        fn = self.fn
        try:
            if fn is None:
                fn = compile_inline(
                    self.assertion, self.templates.render(self.assertion.value, case.vars)
                )
            result = await call(fn, output.text, python_context(case, self.assertion))
            return python_result(result, self.assertion.threshold)
        except Exception as exc:  # noqa: BLE001 - user code failing fails the case, with its error
            return verdict(False, f"Python code execution failed: {exc}")


def _python(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    value = assertion.value
    if not isinstance(value, str) or not value.strip():
        raise bad(assertion, "needs code as its value: an expression, a body, or file://x.py")
    if value.startswith("file://"):
        return PythonScorer(
            assertion.name, assertion, load_python_file(assertion, value, ctx.base_dir)
        )
    templates = Templates()
    templates.check(assertion, value)
    if templates.has(value):
        compile_inline(assertion, templates.render(value, {}))  # syntax errors now, not per case
        return PythonScorer(assertion.name, assertion, None, templates)
    return PythonScorer(assertion.name, assertion, compile_inline(assertion, value), templates)


@dataclass(slots=True)
class CustomScorer:
    """A custom function (or an object's ``score`` method) as a scorer."""

    name: str
    fn: Callable[..., Any]
    kwargs: Mapping[str, Any]
    threshold: float | None

    async def score(self, case: Case, output: Output) -> Score:
        try:
            result = await call(self.fn, case, output, **self.kwargs)
            return custom_result(result, self.threshold)
        except Exception as exc:  # noqa: BLE001 - a failing custom scorer fails the case, named
            return verdict(False, f"custom scorer {self.name!r} failed: {exc!r}")


def _adapt(assertion: Assertion, obj: Any, kwargs: Mapping[str, Any], label: str) -> Scorer:
    if inspect.isclass(obj):
        try:
            obj = obj(**kwargs)
        except TypeError as exc:
            raise bad(assertion, f"{label}: cannot build it with {dict(kwargs)}: {exc}") from exc
        kwargs = {}
    method = getattr(obj, "score", None)
    if callable(method):
        return CustomScorer(assertion.name, method, {}, assertion.threshold)
    if not callable(obj):
        raise bad(assertion, f"{label} is not a function, a class or an object with score()")
    return CustomScorer(assertion.name, obj, kwargs, assertion.threshold)


def _custom(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    from tether.guards.builtin.json_schema import import_object

    ref = assertion.value
    if not isinstance(ref, str) or ":" not in ref:
        raise bad(assertion, "value is 'package.module:function' (a function of case, output)")
    try:
        obj = import_object(ref)
    except ConfigError as exc:
        raise bad(assertion, str(exc)) from None
    return _adapt(assertion, obj, dict(assertion.options), ref)


def entry_point_scorer(entry_point: Any, assertion: Assertion) -> Scorer:
    """The scorer an entry point of group ``tether.scorers`` provides for ``assertion``."""
    try:
        obj = entry_point.load()
    except Exception as exc:  # a broken plugin is reported as a bad assert
        raise bad(assertion, f"entry point {entry_point.value!r} does not load: {exc!r}") from exc
    kwargs = dict(assertion.options)
    if assertion.value is not None:
        kwargs["value"] = assertion.value
    return _adapt(assertion, obj, kwargs, f"entry point {entry_point.name!r}")


FACTORIES: dict[str, Factory] = {"python": _python, "custom": _custom}

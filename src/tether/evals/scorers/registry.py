"""Every assert type tether runs, and how a written assert becomes a :class:`Scorer`.

An assert is written as promptfoo writes it (``{type, value, threshold, weight, metric, ...}``)
in a dataset row, a promptfoo config or a feature's ``evals.scorers``; the CLI's ``--scorer``
takes ``NAME[:ARG]``:

* ``NAME`` alone: an assert of that type with no value (``is-json``);
* ``NAME:ARG`` where NAME is a known type: that type with ARG as its value, everything after the
  first colon (``contains:paris``, ``llm-rubric:Is polite``, ``regex:^\\d+$``; so the types
  ``similar:dot`` and ``similar:euclidean`` are written as dicts, not on the command line);
* ``module.path:function`` where ``module.path`` is not a known type and contains a dot (or is
  an importable module): a custom scorer, ``{type: custom, value: "module.path:function"}``.

Types come from the scorer modules' ``FACTORIES`` (:mod:`.deterministic`, :mod:`.structured`,
:mod:`.text_similarity`, :mod:`.programmatic`, :mod:`.guard`, :mod:`.model_graded`) and from
entry points of group ``tether.scorers`` (the entry point's name is the type; it names a
function ``(case, output) -> Score | bool | float | dict``, see :mod:`.programmatic`).

What the registry does the same way for every type: ``not-`` (pass inverted and the score
``1 - score``, unless the type applies promptfoo's own rule for it, e.g. ``not-is-json`` with a
schema; promptfoo ignores ``not-`` on ``levenshtein``, ``cost``, ``latency``, ``python``,
``llm-rubric``, ``model-graded-closedqa`` and ``factuality``, so tether refuses it there rather
than silently ignore it), ``weight`` (a ``weight: 0`` assert always passes and counts for
nothing) and ``metric`` (the score's name). ``threshold`` is each type's own (a maximum distance
for ``levenshtein``, a minimum score for ``rouge-n`` and ``similar``, a maximum for ``cost`` and
``latency``, ...).

An unknown type, or a value a scorer cannot use (a regex that does not compile, an invalid JSON
schema), is a :class:`~tether.errors.DatasetError` when the scorer is built, before any call.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from tether.errors import DatasetError
from tether.evals.scorers.base import Factory
from tether.evals.types import Assertion, Case, Output, Score, Scorer, ScoringContext

ENTRY_POINT_GROUP = "tether.scorers"
MODULES = (
    "deterministic",
    "structured",
    "text_similarity",
    "programmatic",
    "guard",
    "model_graded",
)
# Types whose promptfoo handler ignores ``not-``: writing it is rejected rather than ignored.
NO_INVERSE = frozenset(
    {
        "levenshtein",
        "cost",
        "latency",
        "python",
        "llm-rubric",
        "model-graded-closedqa",
        "factuality",
    }
)
KNOWN_KEYS = frozenset({"type", "value", "threshold", "weight", "metric"})
SHARED_KEY = "scorers.registry.factories"  # in ScoringContext.shared
UNSUPPORTED_OPTIONS = {  # promptfoo assert keys tether cannot honour: refused, never ignored
    "transform": "an assert's `transform` (JavaScript run on the answer first) is not "
    "supported; write the check as a `python` assert, which gets the answer as `output`",
}


def _module_factories() -> dict[str, Factory]:
    factories: dict[str, Factory] = {}
    for module in MODULES:
        name = f"tether.evals.scorers.{module}"
        try:
            loaded = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but one of its imports is missing
                raise
            continue  # a scorer module not written (yet): its types are simply not offered
        factories.update(getattr(loaded, "FACTORIES", {}))
    return factories


def _entry_point_types() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_types() -> set[str]:
    """Every assert type tether supports, without ``not-`` (built-ins and entry points)."""
    return set(_module_factories()) | set(_entry_point_types())


def _unknown(type_: str, known: Iterable[str]) -> DatasetError:
    import difflib

    names = sorted(known)
    close = difflib.get_close_matches(type_, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return DatasetError(
        f"unsupported assert type {type_!r}{hint}. Supported: {', '.join(names)}; a custom "
        "scorer is {type: custom, value: 'module:function'} or an entry point of group "
        f"{ENTRY_POINT_GROUP!r}"
    )


@dataclass(slots=True)
class _Applied:
    """A type's scorer with ``not-``, ``weight`` and ``metric`` applied."""

    inner: Scorer
    name: str
    weight: float
    negated: bool

    async def score(self, case: Case, output: Output) -> Score:
        raw = await self.inner.score(case, output)
        passed, value, reason = raw.passed, raw.value, raw.reason
        if self.negated and not getattr(self.inner, "handles_not", False):
            passed, value = not passed, 1.0 - value
            if passed:
                reason = f"failed, as not- expects ({reason or 'no reason given'})"
            else:
                reason = f"passed, where not- expects a failure ({reason or 'no reason given'})"
        if self.weight == 0:
            passed = True  # promptfoo: an assert of weight 0 is reported and never fails a test
        return Score(
            value=min(1.0, max(0.0, value)),
            passed=passed,
            reason=reason,
            name=self.name,
            weight=self.weight,
            judge=raw.judge,
        )


def build_scorer(assertion: Assertion, ctx: ScoringContext) -> Scorer:
    """The scorer of one assert. Raises DatasetError for an unknown type or an unusable value."""
    for key, why in UNSUPPORTED_OPTIONS.items():
        if key in assertion.options:
            raise DatasetError(f"assert {assertion.type!r}: {why}")
    base = assertion.base_type
    factories: dict[str, Factory] = ctx.shared.get(SHARED_KEY) or {}
    if not factories:  # once per context: a dataset of 100,000 distinct asserts builds fast
        factories = ctx.shared[SHARED_KEY] = _module_factories()
    factory = factories.get(base)
    if factory is None:
        eps = _entry_point_types()
        if base not in eps:
            raise _unknown(assertion.type, set(factories) | set(eps))
        from tether.evals.scorers.programmatic import entry_point_scorer

        inner = entry_point_scorer(eps[base], assertion)
    else:
        if assertion.negated and base in NO_INVERSE:
            raise DatasetError(
                f"assert type {assertion.type!r}: promptfoo ignores 'not-' on {base!r}, so tether "
                f"refuses it rather than guess; write the condition into {base!r} itself "
                "(its threshold, or the code's return value)"
            )
        inner = factory(assertion, ctx)
    return _Applied(inner, assertion.name, assertion.weight, assertion.negated)


def assertion_of(spec: Mapping[str, Any], where: str = "scorer") -> Assertion:
    """An :class:`Assertion` from a promptfoo-style dict (``type`` required)."""
    type_ = spec.get("type")
    if not isinstance(type_, str) or not type_:
        raise DatasetError(f"{where}: an assert needs a 'type' (e.g. {{type: contains, value: x}})")
    threshold = spec.get("threshold")
    weight = spec.get("weight", 1.0)
    metric = spec.get("metric")
    try:
        return Assertion(
            type=type_,
            value=spec.get("value"),
            threshold=None if threshold is None else float(threshold),
            weight=1.0 if weight is None else float(weight),
            metric=None if metric is None else str(metric),
            options={k: v for k, v in spec.items() if k not in KNOWN_KEYS},
        )
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: threshold and weight must be numbers ({exc})") from exc


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def parse_scorer(text: str) -> Assertion:
    """The CLI's ``NAME[:ARG]`` (see the module docstring for the rule)."""
    text = text.strip()
    name, sep, arg = text.partition(":")
    name = name.strip()
    if not name:
        raise DatasetError(f"--scorer {text!r}: write NAME or NAME:ARG (e.g. contains:paris)")
    base = name[4:] if name.startswith("not-") else name
    if base in known_types():
        return Assertion(type=name, value=arg if sep else None)
    if sep and arg and ("." in name or _is_module(name)):
        return Assertion(type="custom", value=f"{name}:{arg}")
    raise _unknown(name, known_types())


def assertions(specs: Sequence[str | Mapping[str, Any]]) -> list[Assertion]:
    """The assertions of a config's ``scorers:`` list (dicts as promptfoo writes asserts, or
    ``NAME[:ARG]`` strings)."""
    out: list[Assertion] = []
    for i, spec in enumerate(specs):
        if isinstance(spec, str):
            out.append(parse_scorer(spec))
        else:
            out.append(assertion_of(spec, where=f"scorers[{i}]"))
    return out

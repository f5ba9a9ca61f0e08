"""Build guards from config: built-ins by name, ``module:function`` references, entry points.

A custom reference (``module:attr``) or an entry point of group ``tether.guards`` resolves to:

* an object with a ``check`` method: used as the guard;
* a class: instantiated with the spec's options as keyword arguments;
* a function: it *is* the check, ``fn(text, ctx, **options)``, returning a :class:`Verdict`,
  a bool (True = passed) or an awaitable of either.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from tether.config.guards import (
    ALIASES,
    EnsembleOptions,
    GuardSpec,
    InjectionOptions,
    JsonSchemaOptions,
    LeakOptions,
    ListOptions,
    LlmJudgeOptions,
    MaxLengthOptions,
    PiiOptions,
    SecretsOptions,
    builtin_options,
)
from tether.errors import ConfigError
from tether.guards.base import Guard, GuardContext, Verdict, as_verdict
from tether.guards.builtin.json_schema import import_object

if TYPE_CHECKING:
    from tether.providers.base import Model
    from tether.providers.capabilities import Capabilities

ENTRY_POINT_GROUP = "tether.guards"
CheckResult = Verdict | bool


@dataclass(frozen=True, slots=True)
class GuardServices:
    """What a guard may use of the Tether that builds it: ``resolve`` turns a ``provider:model``
    ref into a model of the configured providers (ConfigError for an undeclared provider), and
    ``capabilities`` says what that model honours (None: assume everything)."""

    resolve: Callable[[str], Model]
    capabilities: Callable[[str], Capabilities] | None = None


class FunctionGuard:
    """Adapts ``fn(text, ctx, **options) -> Verdict | bool | Awaitable[...]`` to :class:`Guard`."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self._fn = functools.partial(fn, **options) if options else fn

    def check(self, text: str, ctx: GuardContext) -> Verdict | Awaitable[Verdict]:
        result = self._fn(text, ctx)
        if inspect.isawaitable(result):
            return result  # type: ignore[no-any-return, unused-ignore]  # awaited by the runner
        return as_verdict(result)


def build_builtin(spec: GuardSpec, services: GuardServices | None = None) -> Guard | None:
    """The built-in guard for ``spec``, or None when the name is not a built-in."""
    opts = spec.options
    name = spec.name
    if name == "pii":
        from tether.guards.builtin.pii import PiiGuard

        return PiiGuard(PiiOptions.model_validate(opts))
    if name == "prompt_injection":
        from tether.guards.builtin.injection import InjectionGuard

        threshold = 0.5 if spec.threshold is None else spec.threshold
        injection = InjectionOptions.model_validate(opts)
        if injection.model is not None:  # bring your own detector
            from tether.guards.builtin.classifier import ClassifierGuard

            return ClassifierGuard(injection, threshold)
        return InjectionGuard(injection, threshold)
    if name == "secrets":
        from tether.guards.builtin.secrets import SecretsGuard

        return SecretsGuard(SecretsOptions.model_validate(opts))
    if name == "json_schema":
        from tether.guards.builtin.json_schema import JsonSchemaGuard

        return JsonSchemaGuard(JsonSchemaOptions.model_validate(opts))
    if name == "system_prompt_leak":
        from tether.guards.builtin.leak import LeakGuard

        options = LeakOptions.model_validate(opts)
        if spec.threshold is not None:
            options = options.model_copy(update={"min_overlap": max(spec.threshold, 0.01)})
        return LeakGuard(options)
    if spec.name in ("llm_judge", "ensemble"):
        return build_composite(spec, services)
    return build_list_guard(spec)


def build_composite(spec: GuardSpec, services: GuardServices | None) -> Guard:
    """``llm_judge`` (asks a configured model) and ``ensemble`` (combines guards)."""
    if spec.name == "llm_judge":
        from tether.guards.builtin.judge import JudgeGuard

        threshold = 0.5 if spec.threshold is None else spec.threshold
        return JudgeGuard(LlmJudgeOptions.model_validate(spec.options), services, threshold)
    from tether.guards.builtin.ensemble import EnsembleGuard

    options = EnsembleOptions.model_validate(spec.options)
    if spec.threshold is not None and options.mode != "weighted":
        raise ConfigError(
            f"ensemble: threshold applies to mode weighted only (this one is {options.mode}); "
            "set the threshold on a member instead"
        )
    members = [build_guard(member, services) for member in options.guards]
    threshold = 0.5 if spec.threshold is None else spec.threshold
    return EnsembleGuard(options, members, threshold)


def build_list_guard(spec: GuardSpec) -> Guard | None:
    from tether.guards.builtin.lists import BannedGuard, MaxLengthGuard, TopicsGuard

    if spec.name == "banned":
        return BannedGuard(ListOptions.model_validate(spec.options))
    if spec.name == "topics":
        return TopicsGuard(ListOptions.model_validate(spec.options))
    if spec.name == "max_length":
        return MaxLengthGuard(MaxLengthOptions.model_validate(spec.options))
    return None


def _check_options(
    target: Callable[..., Any], leading: int, options: dict[str, Any], where: str
) -> None:
    """Refuse options ``target`` cannot take now (start-up, ``tether check``), not on a call."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # a builtin without a signature: nothing to check against
    try:
        signature.bind(*([None] * leading), **options)
    except TypeError as exc:
        takes = [
            n
            for n, p in list(signature.parameters.items())[leading:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        unknown = [k for k in options if k not in takes]
        close = difflib.get_close_matches(unknown[0], takes, n=1) if unknown else []
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise ConfigError(
            f"guard {where}: its options do not fit ({exc}); {hint}"
            f"it takes: {', '.join(takes) or 'no options'}"
        ) from None


def from_object(obj: Any, options: dict[str, Any], where: str) -> Guard:
    if isinstance(obj, type):
        _check_options(obj, 0, options, where)
        obj = obj(**options)
        if not callable(getattr(obj, "check", None)):
            raise ConfigError(f"guard {where}: {type(obj).__name__} has no check(text, ctx)")
        return obj  # type: ignore[no-any-return]
    if callable(getattr(obj, "check", None)):
        if options:
            raise ConfigError(f"guard {where} is an instance; it takes no options")
        return obj  # type: ignore[no-any-return]
    if callable(obj):
        _check_options(obj, 2, options, where)  # fn(text, ctx, **options)
        return FunctionGuard(obj, options)
    raise ConfigError(f"guard {where} is neither a guard, a class nor a function")


def load_entry_point(name: str) -> Any | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


def build_guard(spec: GuardSpec, services: GuardServices | None = None) -> Guard:
    """The guard a spec names. Raises ConfigError naming the fix when it cannot be built.
    ``services`` reach the configured providers (``llm_judge`` needs them)."""
    guard = build_builtin(spec, services)
    if guard is not None:
        return guard
    if ":" in spec.name:
        return from_object(import_object(spec.name), spec.options, spec.name)
    obj = load_entry_point(spec.name)
    if obj is None:
        raise ConfigError(unknown_guard(spec.name))
    return from_object(obj, spec.options, spec.name)


def unknown_guard(name: str) -> str:
    """The message for a guard name nothing provides, with the closest known name."""
    plugins = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    known = sorted({*builtin_options(), *ALIASES, *plugins})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    return (
        f"guard {name!r} is not a built-in, and no package provides an entry point {name!r} "
        f"in group {ENTRY_POINT_GROUP!r}; {hint}known guards: {', '.join(known)}; "
        "or use 'module:function'"
    )

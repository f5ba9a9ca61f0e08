"""A feature compiled for calling: its prompt template, its resilient model chain, what its
traces keep of each call (:class:`~tether.pipeline.capture.Capture`), when it declares any, its
guards (a :class:`~tether.guards.GuardRunner`, built once) and its stages in slot order (the
guards' two and the caller's own: :mod:`tether.pipeline.stages`; none without guards)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

from tether.config.models import FeatureConfig
from tether.errors import ConfigError, InvalidRequest, MissingVariable
from tether.guards.registry import GuardServices
from tether.guards.runner import GuardRunner
from tether.pipeline.capture import Capture
from tether.pipeline.guarding import InputGuards, OutputGuards
from tether.pipeline.stages import Stage, arrange
from tether.resilience.chain import Chain
from tether.types import Message, ModelRequest


def template_environment() -> SandboxedEnvironment:
    """Sandboxed Jinja2; a variable the caller did not pass is an error, not an empty string."""
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


@dataclass(slots=True)
class CompiledFeature:
    name: str
    config: FeatureConfig
    model: Chain
    _template: Any
    _system: Any
    capture: Capture
    guards: GuardRunner | None = None  # None without guards: the unguarded path stays as fast
    own_messages: int = 0  # leading messages of every request that are the feature's own
    stages: tuple[Stage, ...] = ()  # in slot order; empty without guards or stages of one's own
    version: str = ""  # a hash of the feature's effective spec (config_version on its traces)
    variants: Mapping[str, CompiledFeature] = dataclasses.field(default_factory=dict)

    @classmethod
    def compile(
        cls,
        name: str,
        config: FeatureConfig,
        model: Chain,
        env: SandboxedEnvironment,
        stages: Sequence[Stage] = (),
        services: GuardServices | None = None,
    ) -> CompiledFeature:
        """``stages`` are the caller's own (``Tether(stages=...)``), placed by their slot after
        the feature's guards in the same slot; ``services`` reach the configured providers
        (for guards that ask a model)."""
        try:
            template = env.from_string(config.prompt.template)
            system = env.from_string(config.prompt.system) if config.prompt.system else None
        except TemplateError as exc:
            raise ConfigError(
                f"features.{name}.prompt: the template does not parse ({exc}); "
                "templates use Jinja2 syntax, e.g. '{{ message }}'"
            ) from None
        guards = None if config.guards.empty else GuardRunner(config.guards, services=services)
        own = 1 if system is not None and _static_text(env, system, config.prompt.system) else 0
        capture = Capture.for_feature(config, guards)
        builtin: list[Stage] = []
        if guards is not None:
            builtin = [InputGuards(guards), OutputGuards(guards)]
        ordered = arrange([*builtin, *stages])
        if config.kind == "embedding":
            ordered = tuple(s for s in ordered if getattr(s, "applies_to_embeddings", False))
        version = config_version(config)
        return cls(name, config, model, template, system, capture, guards, own, ordered, version)

    def variant(self, name: str, *, strict: bool = False) -> CompiledFeature:
        """The feature as variant ``name`` runs it (``"default"``: as declared). A name the
        feature does not declare runs it as declared, unless ``strict`` (a caller asked for that
        variant by name): then InvalidRequest."""
        found = self.variants.get(name)
        if found is not None or name == "default":
            return found or self
        if strict:
            known = ", ".join(["default", *self.variants])
            raise InvalidRequest(
                f"feature {self.name!r} has no variant {name!r} (declared: {known}); declare it "
                f"under features.{self.name}.variants",
                param="variant",
                reason="variant_not_found",
            )
        return self

    def build_request(self, variables: Mapping[str, Any]) -> ModelRequest:
        """The feature's own prompt: system and template rendered with the call's variables."""
        user = self._render(self._template, variables)
        system = self._render(self._system, variables) if self._system is not None else None
        messages = [Message("system", system)] if system else []
        messages.append(Message("user", user))
        return ModelRequest(
            messages=messages,
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
        )

    def adopt(self, request: ModelRequest, variables: Mapping[str, Any]) -> ModelRequest:
        """A caller's own conversation (the gateway's chat completions): the feature's system
        prompt goes first, the feature's defaults fill what the caller left unset, and the
        feature's ``max_tokens`` is a limit a caller cannot raise. Returns a new request: the
        caller's is left as it was."""
        system = self._render(self._system, variables) if self._system is not None else None
        messages = request.messages
        if system:  # as in build_request: an empty system prompt is no message
            messages = [Message("system", system), *messages]
        limit, max_tokens = self.config.max_tokens, request.max_tokens
        if max_tokens is None or (limit is not None and max_tokens > limit):
            max_tokens = limit
        temperature = request.temperature
        if temperature is None:
            temperature = self.config.temperature
        return dataclasses.replace(
            request, messages=list(messages), max_tokens=max_tokens, temperature=temperature
        )

    def _render(self, template: Any, variables: Mapping[str, Any]) -> str:
        try:
            return str(template.render(variables))
        except UndefinedError as exc:
            raise MissingVariable(
                f"feature {self.name!r}: its prompt needs a variable the call did not pass "
                f"({exc.message}); pass it, e.g. variables={{'message': ...}} or "
                "--var message=..."
            ) from None
        except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise InvalidRequest(
                f"feature {self.name!r}: its prompt could not be rendered with the variables "
                f"passed ({type(exc).__name__}: {exc}); check the variables' types against the "
                "feature's prompt template",
                reason="template_error",
            ) from None


def config_version(config: FeatureConfig) -> str:
    """A short hash of a feature's effective spec (every field, defaults included): calls of
    the same version ran the same prompt, models, guards, budgets and failure path."""
    spec = config.model_dump_json(by_alias=True)
    return hashlib.sha256(spec.encode("utf-8")).hexdigest()[:16]


def _static_text(env: SandboxedEnvironment, template: Any, source: str | None) -> bool:
    """Whether a system template renders no variable and a non-empty text: only then is its
    message the feature's own. A system prompt that renders a caller's variables carries the
    caller's text, so input guards check it like any message the caller sends."""
    if not source or meta.find_undeclared_variables(env.parse(source)):
        return False
    try:
        return bool(template.render({}))
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError):
        return False  # the same error surfaces, with its message, when the feature is called

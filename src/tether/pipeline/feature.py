"""A feature compiled for calling: its prompt template and its resilient model chain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from tether.config.models import FeatureConfig
from tether.errors import ConfigError, InvalidRequest
from tether.providers.base import Model
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
    model: Model
    _template: Any
    _system: Any

    @classmethod
    def compile(
        cls, name: str, config: FeatureConfig, model: Model, env: SandboxedEnvironment
    ) -> CompiledFeature:
        try:
            template = env.from_string(config.prompt.template)
            system = env.from_string(config.prompt.system) if config.prompt.system else None
        except TemplateError as exc:
            raise ConfigError(
                f"features.{name}.prompt: the template does not parse ({exc}); "
                "templates use Jinja2 syntax, e.g. '{{ message }}'"
            ) from None
        return cls(name, config, model, template, system)

    def build_request(self, variables: Mapping[str, Any]) -> ModelRequest:
        try:
            user = self._template.render(variables)
            system = self._system.render(variables) if self._system is not None else None
        except UndefinedError as exc:
            raise InvalidRequest(
                f"feature {self.name!r}: its prompt needs a variable the call did not pass "
                f"({exc.message}); pass it, e.g. variables={{'message': ...}} or "
                "--var message=..."
            ) from None
        messages = [Message("system", system)] if system else []
        messages.append(Message("user", user))
        return ModelRequest(
            messages=messages,
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
        )

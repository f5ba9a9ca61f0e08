"""The ``guards:`` block of a feature in ``tether.yaml``.

Each list item is a bare guard name or a one-key mapping from the name to its settings::

    guards:
      input:
        - pii                                   # default action for pii: redact
        - {prompt_injection: {threshold: 0.8, action: block}}
      output:
        - {json_schema: {schema: {type: object, required: [answer]}, action: reask, max_reasks: 2}}
        - system_prompt_leak

Settings common to every guard (``action``, ``threshold``, ``latency_budget_ms``, ``sample``,
``max_reasks``, ``on_error``; for input guards ``roles``) sit next to the guard's own options
(``schema``, ``entities`` ...); a built-in guard's options are validated strictly, a custom
guard (``module:function`` or an entry point of group ``tether.guards``) receives its options as
keyword arguments.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from tether.config.base import Strict

PII_TYPES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
)
NER_TYPES = ("PERSON", "LOCATION")

#: What a failing guard does (the guard only gives a verdict; the config names the action).
GuardAction = Literal["block", "redact", "reask", "fallback", "review", "log"]


def _check_regexes(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return patterns


# ---------------------------------------------------------------- built-in guard options


class PiiOptions(Strict):
    """``pii``: emails, phone numbers, cards (Luhn), IBANs (mod 97), US SSNs, IP addresses; and
    with ``ner: true`` person names and locations through spaCy (``pip install spacy``)."""

    entities: list[str] = Field(default_factory=lambda: list(PII_TYPES))
    ner: bool = False
    ner_model: str = "en_core_web_sm"
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "NL", "BE", "CH", "IT", "ES", "AU"]
    )

    @field_validator("entities")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        known = (*PII_TYPES, *NER_TYPES)
        for name in v:
            if name not in known:
                raise ValueError(f"unknown pii entity {name!r}; known: {', '.join(known)}")
        return v


class InjectionOptions(Strict):
    """``prompt_injection``: attack-pattern heuristics plus a small shipped classifier, or your
    own Hugging Face classifier exported to ONNX (``model: PATH``)."""

    heuristics: bool = True
    classifier: bool = True
    classifier_threshold: float = Field(
        default=0.8,
        gt=0,
        lt=1,
        description="calibrated classifier probability that maps to score 0.5 (its operating "
        "point, chosen by scripts/train_injection.py on leave-one-source-out results)",
    )
    model_path: str | None = Field(
        default=None, description="weights produced by scripts/train_injection.py"
    )
    # bring your own detector (tether.guards.builtin.classifier; pip install 'tether[detectors]')
    model: str | None = Field(
        default=None,
        description="a Hugging Face sequence classifier exported to ONNX (folder with model.onnx, "
        "tokenizer.json, config.json); runs instead of the shipped classifier",
    )
    injection_labels: list[str] | None = Field(
        default=None, min_length=1, description="labels meaning attack (default: from id2label)"
    )
    labels: list[str] | None = Field(
        default=None, min_length=2, description="the model's labels in output order (id2label)"
    )
    model_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="model probability that maps to score 0.5"
    )
    max_length: int = Field(default=512, ge=8, description="tokens per window (longer: windows)")
    batch_size: int = Field(default=16, ge=1, le=1024)
    batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    threads: int | None = Field(default=None, ge=1, description="onnxruntime intra-op threads")

    @model_validator(mode="after")
    def _model_keys(self) -> InjectionOptions:
        model_only = {"injection_labels", "labels", "model_threshold", "max_length"}
        model_only |= {"batch_size", "batch_wait_ms", "threads"}
        stray = sorted(model_only & self.model_fields_set)
        if self.model is None and stray:
            raise ValueError(f"{', '.join(stray)} only apply with model: PATH; add it or drop them")
        if self.model is not None and not self.classifier:
            raise ValueError("model: PATH replaces the shipped classifier; drop classifier: false")
        shipped = sorted({"model_path", "classifier_threshold"} & self.model_fields_set)
        if self.model is not None and shipped:
            raise ValueError(
                f"{', '.join(shipped)} tune the shipped classifier, which model: PATH replaces; "
                "drop them (model_threshold sets your model's operating point)"
            )
        return self


class SecretsOptions(Strict):
    """``secrets``: API keys, tokens, private keys; ``patterns`` adds your own (name: regex)."""

    patterns: dict[str, str] = Field(default_factory=dict)
    generic_assignments: bool = Field(
        default=True, description="flag `password = '...'`-style assignments of random strings"
    )

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: dict[str, str]) -> dict[str, str]:
        _check_regexes(list(v.values()))
        return v


class JsonSchemaOptions(Strict):
    """``json_schema``: the output must be JSON valid against ``schema`` (a JSON Schema) or
    ``model`` (``module:PydanticModel``)."""

    model_config = Strict.model_config | {"populate_by_name": True}

    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    model: str | None = None
    repair: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> JsonSchemaOptions:
        if (self.json_schema is None) == (self.model is None):
            raise ValueError(
                "json_schema takes exactly one of schema: {...} or model: module:Class"
            )
        if self.model is not None and ":" not in self.model:
            raise ValueError(f"model {self.model!r} must be 'module:Class'")
        return self


class LeakOptions(Strict):
    """``system_prompt_leak``: the output reproduces the system prompt (fuzzily) or a canary."""

    system_prompt: str | None = Field(default=None, description="default: the feature's own")
    canaries: list[str] = Field(default_factory=list)
    min_overlap: float = Field(default=0.5, gt=0, le=1)
    ngram_words: int = Field(default=5, ge=2, le=12)


class ListOptions(Strict):
    """``topics`` (allow list: the text must match one) and ``banned`` (deny list)."""

    keywords: list[str] = Field(default_factory=list)
    regex: list[str] = Field(default_factory=list)
    case_sensitive: bool = False

    @field_validator("regex")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        return _check_regexes(v)

    @model_validator(mode="after")
    def _not_empty(self) -> ListOptions:
        if not self.keywords and not self.regex:
            raise ValueError("give at least one of keywords: [...] or regex: [...]")
        return self


class MaxLengthOptions(Strict):
    """``max_length``: at most ``max_chars`` characters and/or about ``max_tokens`` tokens."""

    max_chars: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _some_limit(self) -> MaxLengthOptions:
        if self.max_chars is None and self.max_tokens is None:
            raise ValueError("max_length needs max_chars: N and/or max_tokens: N")
        return self


class LlmJudgeOptions(Strict):
    """``llm_judge``: a configured model (``provider:model``) judges the text against a rubric
    and answers ``{"violation", "score", "reason"}``; verdicts are cached in process."""

    model: str = Field(description="the judge, 'provider:model' of a declared provider")
    rubric: str | None = Field(
        default=None, description="what counts as a violation (default: prompt injection)"
    )
    cache_size: int = Field(default=1024, ge=0, description="verdicts kept (0: no cache)")
    max_chars: int = Field(
        default=8000, ge=200, description="longer texts are judged on their head and tail"
    )
    max_tokens: int = Field(default=200, ge=16, le=4096, description="the judge's answer limit")
    json_mode: bool | None = Field(
        default=None,
        description="ask for a JSON-schema answer (default: when the model honours json_schema)",
    )

    @field_validator("model")
    @classmethod
    def _ref(cls, v: str) -> str:
        provider, _, model = v.partition(":")
        if not provider or not model:
            raise ValueError(f"model {v!r} must be 'provider:model', e.g. 'local:smollm2'")
        return v


ENSEMBLE_MEMBER_KEYS = ("action", "roles", "sample", "max_reasks")


class EnsembleOptions(Strict):
    """``ensemble``: one verdict from several guards. ``any`` fails when a member fails,
    ``all`` when every member fails, ``weighted`` when the weighted mean score reaches the
    ensemble's ``threshold``; ``cascade`` asks the members in order and goes on to the next
    only while the score is inside ``band`` (outside it, the member's verdict stands)."""

    mode: Literal["any", "all", "weighted", "cascade"] = "any"
    guards: list[GuardSpec] = Field(min_length=1, description="the members, cheapest first")
    weights: list[float] | None = Field(
        default=None, description="weighted mode: one weight >= 0 per member (default: equal)"
    )
    band: tuple[float, float] = Field(
        default=(0.2, 0.8), description="cascade: scores in [low, high] ask the next member"
    )

    @model_validator(mode="after")
    def _fits(self) -> EnsembleOptions:
        for i, member in enumerate(self.guards):
            stray = [k for k in ENSEMBLE_MEMBER_KEYS if k in member.model_fields_set]
            if stray:
                raise ValueError(
                    f"guards.{i}: {member.name}: set {', '.join(stray)} on the ensemble itself, "
                    "not on a member (members only give verdicts)"
                )
        if self.weights is not None:
            if self.mode != "weighted":
                raise ValueError("weights only apply with mode: weighted; remove them")
            if len(self.weights) != len(self.guards) or min(self.weights) < 0:
                raise ValueError(
                    f"weights: give one weight >= 0 per member ({len(self.guards)} members)"
                )
            if sum(self.weights) <= 0:
                raise ValueError("weights: at least one weight must be above 0")
        low, high = self.band
        if not 0 <= low <= high <= 1:
            raise ValueError(f"band: [{low}, {high}] must be [low, high], 0 <= low <= high <= 1")
        return self


class NoOptions(Strict):
    """A guard without options."""


def builtin_options() -> dict[str, type[Strict]]:
    """Built-in guard name -> the model its options are validated with."""
    return {
        "pii": PiiOptions,
        "prompt_injection": InjectionOptions,
        "secrets": SecretsOptions,
        "json_schema": JsonSchemaOptions,
        "system_prompt_leak": LeakOptions,
        "topics": ListOptions,
        "banned": ListOptions,
        "max_length": MaxLengthOptions,
        "llm_judge": LlmJudgeOptions,
        "ensemble": EnsembleOptions,
    }


def default_action(name: str) -> GuardAction:
    """What a failing guard does when the config does not say."""
    return {
        "pii": "redact",
        "secrets": "redact",
        "json_schema": "reask",
    }.get(name, "block")  # type: ignore[return-value]


ALIASES = {"pii_redact": ("pii", "redact"), "injection": ("prompt_injection", None)}
COMMON_KEYS = frozenset(
    {"name", "action", "threshold", "latency_budget_ms", "sample", "max_reasks", "on_error"}
    | {"roles"}
)
INPUT_ROLES = ("system", "developer", "user", "assistant", "tool")


def located_option_errors(guard: str, model: type[Strict], exc: ValidationError) -> ValidationError:
    """A built-in guard's option errors, kept at the option's YAML path; an unknown option names
    the options the guard takes and the closest one (``treshold``: did you mean ``threshold``)."""
    fields = model.model_fields.items()
    takes = sorted({*(COMMON_KEYS - {"name"}), *(f.alias or n for n, f in fields)})
    details: list[InitErrorDetails] = []
    for err in exc.errors():
        if err["type"] != "extra_forbidden":
            kind = PydanticCustomError(err["type"], err["msg"], err.get("ctx"))
            details.append(InitErrorDetails(type=kind, loc=err["loc"], input=err["input"]))
            continue
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, takes, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        kind = PydanticCustomError(
            "unknown_option",
            "unknown option `{key}` of guard {guard}",
            {"key": key, "guard": guard, "fix": f"{hint}{guard} takes: {', '.join(takes)}"},
        )
        details.append(InitErrorDetails(type=kind, loc=err["loc"], input=err["input"]))
    return ValidationError.from_exception_data(model.__name__, details)


# ---------------------------------------------------------------- the spec of one guard


class GuardSpec(Strict):
    """One guard in a feature's ``guards.input`` or ``guards.output`` list."""

    name: str = Field(description="built-in name, 'module:function', or an entry point name")
    action: GuardAction | None = Field(default=None, description="default depends on the guard")
    threshold: float | None = Field(default=None, ge=0, le=1)
    latency_budget_ms: float | None = Field(default=None, gt=0)
    sample: float = Field(default=1.0, gt=0, le=1, description="fraction of calls checked")
    max_reasks: int = Field(default=1, ge=0, le=5)
    on_error: Literal["block", "pass"] = Field(
        default="block", description="what a guard that raises or times out does"
    )
    roles: list[str] | None = Field(
        default=None,
        description="input guards only: the message roles checked (default: every role the "
        "caller sends); developer is the same as system",
    )
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``"pii"`` or ``{pii: {action: redact, entities: [...]}}`` -> the full shape."""
        if isinstance(data, str):
            data = {"name": data}
        elif isinstance(data, dict) and "name" not in data and len(data) == 1:
            ((name, body),) = data.items()
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise ValueError(
                    f"guard {name!r}: settings must be a mapping, "
                    f"e.g. {{{name}: {{action: block}}}}"
                )
            data = {"name": name, **body}
        elif not isinstance(data, dict):
            raise ValueError("a guard is a name (pii) or a one-key mapping ({pii: {...}})")
        data = dict(data)
        alias = ALIASES.get(str(data.get("name")))
        if alias is not None:
            data["name"] = alias[0]
            if alias[1] is not None:
                data.setdefault("action", alias[1])
        options = dict(data.pop("options", None) or {})
        for key in [k for k in data if k not in COMMON_KEYS]:
            options[key] = data.pop(key)
        data["options"] = options
        return data

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        if not v:
            raise ValueError(
                "roles: [] checks nothing; name at least one of "
                f"{', '.join(INPUT_ROLES)}, or remove roles to check every role"
            )
        for role in v:
            if role not in INPUT_ROLES:
                raise ValueError(f"roles: unknown role {role!r}; use {', '.join(INPUT_ROLES)}")
        # developer is the same as system (checks_role maps it)
        return sorted({"system" if r == "developer" else r for r in v}, key=INPUT_ROLES.index)

    def checks_role(self, role: str | None) -> bool:
        """Whether this (input) guard checks a message of ``role`` (None: not a message)."""
        if role == "developer":
            role = "system"  # OpenAI's newer name for it
        return self.roles is None or role is None or role in self.roles

    @model_validator(mode="after")
    def _builtin_options(self) -> GuardSpec:
        model = builtin_options().get(self.name)
        if model is not None:
            try:
                model.model_validate(self.options)
            except ValidationError as exc:
                raise located_option_errors(self.name, model, exc) from None
        elif ":" not in self.name and not self.name.isidentifier():
            raise ValueError(
                f"guard {self.name!r} is not a built-in ({', '.join(builtin_options())}), "
                "a 'module:function' reference, or an entry point name"
            )
        return self

    @property
    def effective_action(self) -> GuardAction:
        return self.action or default_action(self.name)

    @property
    def label(self) -> str:
        """A short name for traces and tables."""
        return self.name.rsplit(":", 1)[-1]


class StreamConfig(Strict):
    """How output guards run on streamed text."""

    holdback_chars: int = Field(
        default=96, ge=0, description="tail held back because it may still be part of an entity"
    )
    window_chars: int = Field(
        default=512, ge=64, description="already-sent text re-checked with each new piece"
    )
    min_step_chars: int = Field(default=32, ge=1, description="check at most every N new chars")


class GuardsConfig(Strict):
    """A feature's guards: ``input`` runs before the model call, ``output`` after it."""

    input: list[GuardSpec] = Field(default_factory=list)
    output: list[GuardSpec] = Field(default_factory=list)
    stream: StreamConfig = Field(default_factory=StreamConfig)

    @model_validator(mode="after")
    def _actions_fit_stage(self) -> GuardsConfig:
        for i, spec in enumerate(self.output):
            if spec.roles is not None:
                raise ValueError(
                    f"output.{i}: {spec.name}: roles chooses which messages an input guard "
                    "checks; an output guard checks the answer, so remove roles here"
                )
        for i, spec in enumerate(self.input):
            if spec.effective_action == "reask":
                raise ValueError(
                    f"input.{i}: {spec.name}: action reask asks the model again, so it only "
                    "applies to output guards; use block, redact, fallback, review or log"
                )
        return self

    @property
    def empty(self) -> bool:
        return not self.input and not self.output

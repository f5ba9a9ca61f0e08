"""The one error tree of tether.

Every error tether raises is a :class:`TetherError`. The tree::

    TetherError
    ├── ConfigError              tether.yaml is invalid (names file, line, YAML path, fix)
    │   └── DatasetError         an eval dataset is invalid (names file, row, field, fix), or
    │                            asks for an assert type tether does not support
    ├── InvalidRequest           the caller asked for something malformed
    │   ├── FeatureNotFound      no feature of that name
    │   ├── MissingVariable      the feature's prompt needs a variable the call did not pass
    │   ├── KeyNotFound          no API key matches the id or prefix given
    │   ├── ResponseNotFound     no stored response of that id for this API key
    │   ├── EvalRunNotFound      no stored eval run matches the id or prefix given
    │   ├── PayloadTooLarge      the request body is over the gateway's limit
    │   └── UnsupportedMediaType the request body is not sent as application/json
    ├── AuthenticationFailed     no API key, or an unknown / revoked one
    ├── PermissionDenied         the key may not call that feature (or that admin surface)
    ├── ProviderError            a model call failed (carries provider, model, retryable)
    │   ├── Timeout              connect / first-token / per-attempt / total deadline passed
    │   ├── RateLimited          upstream said 429 (carries retry_after_s)
    │   │   └── RateLimitExceeded tether's own rate limit (rate_limits) refused the call
    │   ├── UpstreamError        bad status, refused connection, malformed body or stream
    │   ├── CircuitOpen          the upstream's breaker is open; the call was not sent
    │   ├── StreamInterrupted    a stream broke after content reached the caller
    │   └── CapabilityUnavailable no model of the chain can honour what the request needs
    ├── GuardBlocked             a guard refused the input or output
    ├── BudgetExceeded           a token / cost budget would be exceeded (carries scope, reset)
    ├── StateUnavailable         the shared state (Redis) cannot be reached and the config says
    │                            fail_closed
    ├── ReviewRequired           the answer is held for a human reviewer
    └── FeatureFailed            every path failed and the feature's on_failure says raise
        └── StructuredOutputUnavailable  only the failure path was left, the request needs
                                 structured output or a tool call, and no respond_json fits

An error whose ``to_caller`` is true (a rate limit, a budget whose feature says
``on_exceeded: reject``) goes to the caller as it is instead of taking the feature's failure
path; ``retry_after_s`` (when set) tells the caller when to try again (the gateway's
``Retry-After``).

Each error has a stable machine-readable ``reason`` (used as the ``reason`` of a degraded result
and, in the gateway, mapped to the OpenAI error envelope in exactly one place) and a message that
says what to do next.
"""

from __future__ import annotations


class TetherError(Exception):
    """Base of every error tether raises."""

    reason: str = "error"
    to_caller: bool = False  # True: the caller gets this error, not the failure path
    retry_after_s: float | None = None  # when the caller may try again (None: no advice)

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class ConfigError(TetherError):
    """The configuration is invalid. The message names file, line, YAML path and the fix."""

    reason = "config_error"


class DatasetError(ConfigError):
    """An eval dataset (or promptfoo config) is invalid, or one of its asserts is of a type
    tether does not support. The message names the file, the row and the field."""

    reason = "dataset_error"


class InvalidRequest(TetherError):
    """The caller's request is malformed; ``param`` names the offending field when known."""

    reason = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.param = param


class FeatureNotFound(InvalidRequest):
    """No feature with that name is declared."""

    reason = "feature_not_found"


class MissingVariable(InvalidRequest):
    """The feature's prompt template needs a variable the call did not pass."""

    reason = "missing_variable"


class KeyNotFound(InvalidRequest):
    """No API key matches the id or prefix given."""

    reason = "key_not_found"


class ResponseNotFound(InvalidRequest):
    """No stored Responses API answer has that id for the calling API key (never stored,
    ``store: false``, or stored by another key: the caller cannot tell which)."""

    reason = "response_not_found"


class EvalRunNotFound(InvalidRequest):
    """No stored eval run matches the id or prefix given (``tether eval list`` shows them)."""

    reason = "eval_run_not_found"


class PayloadTooLarge(InvalidRequest):
    """The request body is larger than the gateway accepts."""

    reason = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    """The request body is not declared as ``application/json``."""

    reason = "unsupported_media_type"


class AuthenticationFailed(TetherError):
    """No API key was given, or it is unknown or revoked."""

    reason = "invalid_api_key"


class PermissionDenied(TetherError):
    """The API key is valid but its scopes do not include what was asked."""

    reason = "permission_denied"


class ProviderError(TetherError):
    """A model call failed. ``retryable`` says whether the same upstream may be asked again."""

    reason = "provider_error"
    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status_code: int | None = None,
        retryable: bool | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.provider = provider
        self.model = model
        self.status_code = status_code
        if retryable is not None:
            self.retryable = retryable


class Timeout(ProviderError):
    """A deadline passed: connect, time to first token, per attempt, or the call's total."""

    reason = "timeout"


class RateLimited(ProviderError):
    """The upstream rate-limited the call (HTTP 429). ``retry_after_s`` is its Retry-After."""

    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class RateLimitExceeded(RateLimited):
    """tether's own rate limit (``rate_limits``) refused the call before any model was asked;
    ``scope`` names the limit (``key``, ``user``, ``tenant``, ``feature``). The caller gets it
    (the gateway's 429 with ``Retry-After``), never the failure path."""

    reason = "rate_limit_exceeded"
    to_caller = True
    retryable = False

    def __init__(
        self, message: str, *, scope: str, retry_after_s: float | None = None, **kw: object
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **kw)
        self.scope = scope


class UpstreamError(ProviderError):
    """The upstream answered badly: error status, refused connection, malformed body/stream."""

    reason = "upstream_error"


class CircuitOpen(ProviderError):
    """The upstream's circuit breaker is open, so the call was not sent."""

    reason = "circuit_open"

    def __init__(self, message: str, *, retry_in_s: float = 0.0, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_in_s = retry_in_s


class StreamInterrupted(ProviderError):
    """A stream broke after content reached the caller; tether never switches provider then."""

    reason = "stream_interrupted"
    retryable = False


class CapabilityUnavailable(ProviderError):
    """No model left in the feature's chain can honour what the request needs (``tools``, a
    ``json_schema``, image, audio or file parts, ``logprobs``): each lacking one was skipped,
    without an attempt (trace event ``fallback_skipped``). ``missing`` names what was lacking.
    Declare a model that has it, or correct ``providers.NAME.capabilities`` if the table is
    wrong."""

    reason = "capability_unavailable"
    retryable = False

    def __init__(self, message: str, *, missing: list[str] | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.missing = list(missing or [])


class GuardBlocked(TetherError):
    """A guard refused the input or the output. ``guard`` names it, ``stage`` says where."""

    reason = "guard_blocked"

    def __init__(self, message: str, *, guard: str | None = None, stage: str | None = None):
        super().__init__(message)
        self.guard = guard
        self.stage = stage


class BudgetExceeded(TetherError):
    """The call would exceed a hard token or cost budget. ``scope`` names it (``request``,
    ``user``, ``tenant``, ``key``, ``feature``, ``global``), ``resets_at`` (epoch seconds) is
    when its period ends (None for ``request``). The failure path answers (reason
    ``budget_exceeded``) unless the feature says ``budgets.on_exceeded: reject``: then
    ``to_caller`` is set and the caller gets it (the gateway's 429 with ``Retry-After``)."""

    reason = "budget_exceeded"

    def __init__(
        self,
        message: str,
        *,
        scope: str | None = None,
        resets_at: float | None = None,
        retry_after_s: float | None = None,
        to_caller: bool = False,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.scope = scope
        self.resets_at = resets_at
        self.retry_after_s = retry_after_s
        self.to_caller = to_caller


class StateUnavailable(TetherError):
    """The state backend that replicas share (``state.backend: redis``) cannot be reached and
    ``state.on_unavailable`` is ``fail_closed``: budgets, rate limits and breakers cannot be
    checked, so the call takes the failure path (reason ``state_unavailable``). tether uses
    the backend again as soon as it answers, without a restart."""

    reason = "state_unavailable"


class ReviewRequired(TetherError):
    """The answer is held for a human reviewer before it may be shown."""

    reason = "review_required"


class FeatureFailed(TetherError):
    """Every path failed and the feature's ``on_failure`` is ``raise``; ``cause`` says why."""

    reason = "feature_failed"

    def __init__(self, message: str, *, cause: TetherError) -> None:
        super().__init__(message, reason=cause.reason)
        self.cause = cause


class StructuredOutputUnavailable(FeatureFailed):
    """The model could not answer, the request needs structured output or a tool call
    (``response_format`` ``json_schema`` / ``json_object``, or ``tools`` with ``tool_choice``
    ``required`` or a named function), and the feature declares no ``on_failure.respond_json``
    that fits the request's schema: a free-text failure answer would only make the caller's
    parser fail and retry. The gateway answers 424 ``structured_output_unavailable``; declare
    a schema-valid ``respond_json`` to answer such requests degraded instead."""

    reason = "structured_output_unavailable"

    def __init__(self, message: str, *, cause: TetherError) -> None:
        super().__init__(message, cause=cause)
        self.reason = "structured_output_unavailable"

"""The ``gateway:`` section of ``tether.yaml``."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from tether.config.base import Strict


def normalize_origin(value: str) -> str:
    """``https://App.example.com:443/`` -> ``https://app.example.com`` (the form browsers send
    in ``Origin``); ValueError when ``value`` is not an origin (scheme, host, optional port)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(
            f"{value!r} is not an origin: write scheme://host[:port], "
            "e.g. https://app.example.com or http://localhost:3000"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


class CorsConfig(Strict):
    """Browsers on these origins may call the gateway (none may by default)."""

    allow_origins: tuple[str, ...] = Field(
        default=(),
        description="Origins (scheme://host[:port]) whose browser pages may call the API; "
        "preflight requests from other origins are refused.",
    )
    max_age_s: int = Field(
        default=600, ge=0, description="How long a browser may cache a preflight answer."
    )

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalize_origin(origin) for origin in value)


class GatewayConfig(Strict):
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies get HTTP 413."
    )
    key_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a verified key is trusted before re-checking."
    )
    cors: CorsConfig = Field(
        default_factory=CorsConfig,
        description="Cross-origin access for browser pages; off unless origins are listed.",
    )

"""The ``gateway:`` section of ``tether.yaml``."""

from __future__ import annotations

from pydantic import Field

from tether.config.base import Strict


class GatewayConfig(Strict):
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies get HTTP 413."
    )
    key_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a verified key is trusted before re-checking."
    )

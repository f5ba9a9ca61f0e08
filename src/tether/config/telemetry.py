"""Telemetry settings: where OpenTelemetry data goes and whether ``/metrics`` is served.

::

    telemetry:
      otlp_endpoint: http://127.0.0.1:4318     # OTLP/HTTP base URL; /v1/traces, /v1/metrics added
      otlp_headers: {x-api-key: ${OTLP_KEY}}
      service_name: support-gateway
      capture_content: false                  # prompt/completion text only when opted in
      prometheus: true
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tether.config.base import Strict


class TelemetryConfig(Strict):
    """``otlp_endpoint: null`` (the default) exports nothing; traces still reach the store."""

    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (None: no OTLP export)",
    )
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    otlp_compression: Literal["none", "gzip"] = "gzip"
    otlp_timeout_s: float = Field(default=10.0, gt=0)
    metrics_export_interval_s: float = Field(default=30.0, gt=0)
    service_name: str = "tether"
    capture_content: bool = Field(
        default=False,
        description="record the answer text on spans (gen_ai.output.messages); off by default",
    )
    prometheus: bool = True

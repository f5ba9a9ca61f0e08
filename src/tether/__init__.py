"""tether: the production layer for AI features.

Every call is guarded, budgeted, traced and evaluated, and has a designed failure path.
See ``Tether`` (async) and ``SyncTether``; errors live in ``tether.errors``.
"""

from typing import TYPE_CHECKING, Any

from tether._version import __version__
from tether.errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    FeatureFailed,
    FeatureNotFound,
    GuardBlocked,
    InvalidRequest,
    ProviderError,
    RateLimited,
    ReviewRequired,
    StreamInterrupted,
    TetherError,
    Timeout,
    UpstreamError,
)

if TYPE_CHECKING:
    from tether.pipeline.result import Result, StreamChunk
    from tether.sdk import SyncTether, Tether

__all__ = [
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigError",
    "FeatureFailed",
    "FeatureNotFound",
    "GuardBlocked",
    "InvalidRequest",
    "ProviderError",
    "RateLimited",
    "Result",
    "ReviewRequired",
    "StreamChunk",
    "StreamInterrupted",
    "SyncTether",
    "Tether",
    "TetherError",
    "Timeout",
    "UpstreamError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """``Tether``, ``SyncTether``, ``Result`` and ``StreamChunk``, loaded on first use: importing
    a part of tether (``tether.config``, ``tether.errors``, the CLI) does not load the pipeline."""
    if name in ("Tether", "SyncTether"):
        from tether import sdk

        return getattr(sdk, name)
    if name in ("Result", "StreamChunk"):
        from tether.pipeline import result

        return getattr(result, name)
    raise AttributeError(f"module 'tether' has no attribute {name!r}")

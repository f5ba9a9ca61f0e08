"""tether: the production layer for AI features.

Every call is guarded, budgeted, traced and evaluated, and has a designed failure path.
See ``Tether`` (async) and ``SyncTether``; errors live in ``tether.errors``.
"""

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

"""Configuration: ``tether.yaml`` validated into pydantic models (``extra="forbid"``).

Each section's models live here (:mod:`~tether.config.providers`, :mod:`~tether.config.features`,
:mod:`~tether.config.guards`, :mod:`~tether.config.store`, :mod:`~tether.config.gateway`,
:mod:`~tether.config.telemetry`), as plain models with their validators. The package imports no
other part of tether but :mod:`tether.errors`: the parts read their config from here, never the
reverse, so there is no import cycle to break by import order.
"""

from tether.config.loader import ConfigProblems, Problem, load_config, parse_config
from tether.config.models import (
    FeatureConfig,
    OnFailureConfig,
    PromptConfig,
    TetherConfig,
    split_model_ref,
)

__all__ = [
    "ConfigProblems",
    "FeatureConfig",
    "OnFailureConfig",
    "Problem",
    "PromptConfig",
    "TetherConfig",
    "load_config",
    "parse_config",
    "split_model_ref",
]

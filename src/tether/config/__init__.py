"""Configuration: ``tether.yaml`` validated into pydantic models (``extra="forbid"``)."""

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

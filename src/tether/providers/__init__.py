"""Providers: where model calls go (local llama.cpp, OpenAI-compatible, Anthropic, scripted)."""

from tether.providers.base import CallContext, Model, Provider

__all__ = ["CallContext", "Model", "Provider"]

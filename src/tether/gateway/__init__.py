"""The OpenAI-compatible gateway: `create_app(settings)` builds it; `tether serve` runs it."""

"""The request pipeline: one module, read top to bottom (``pipeline.py``)."""

from tether.pipeline.pipeline import Call, Pipeline
from tether.pipeline.result import Result, StreamChunk

__all__ = ["Call", "Pipeline", "Result", "StreamChunk"]

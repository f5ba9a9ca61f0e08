"""The request pipeline: one module, read top to bottom (``pipeline.py``); a feature's stages
(``stages.py``) around its model call."""

from tether.pipeline.call import Answer, Call
from tether.pipeline.pipeline import Pipeline
from tether.pipeline.result import Result, StreamChunk
from tether.pipeline.stages import SLOTS, Baseline, Slot, Stage, StreamFilter, VariantPicker

__all__ = [
    "SLOTS",
    "Answer",
    "Baseline",
    "Call",
    "Pipeline",
    "Result",
    "Slot",
    "Stage",
    "StreamChunk",
    "StreamFilter",
    "VariantPicker",
]

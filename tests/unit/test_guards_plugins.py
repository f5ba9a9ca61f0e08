"""Custom guards used by the guard tests through 'module:function' and entry points."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from tether.guards.base import GuardContext, Verdict


def no_shouting(text: str, ctx: GuardContext, limit: int = 3) -> bool:
    return sum(w.isupper() and len(w) > 1 for w in text.split()) < limit


async def slow_async(text: str, ctx: GuardContext, delay: float = 0.0) -> Verdict:
    await asyncio.sleep(delay)
    return Verdict.fail("async says no") if "bad" in text else Verdict.ok()


def broken(text: str, ctx: GuardContext) -> Verdict:
    raise RuntimeError("boom")


class Polite:
    def __init__(self, word: str = "please") -> None:
        self.word = word

    def check(self, text: str, ctx: GuardContext) -> Verdict:
        return Verdict.ok() if self.word in text.lower() else Verdict.fail("say please")


class Answer(BaseModel):
    answer: str
    confidence: float


def reply(data: Any) -> Any:
    return data

"""Python asserts that the parity config loads by ``file://``: ``(output, context)`` in, a
bool, a number or a ``{pass, score, reason}`` dict out (promptfoo's contract)."""

from typing import Any


def short_answer(output: str, context: dict[str, Any]) -> dict[str, Any]:
    words = len(output.split())
    limit = int(context["vars"].get("max_words", 5))
    return {
        "pass": words <= limit,
        "score": min(1.0, limit / max(words, 1)),
        "reason": f"{words} words",
    }


def get_assert(output: str, context: dict[str, Any]) -> bool:
    return output.strip().endswith(".")

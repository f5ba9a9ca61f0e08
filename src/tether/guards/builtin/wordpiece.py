"""Pure-Python BERT (uncased) WordPiece, and the injection classifier's embedding term.

The shipped classifier has a dense part: the mean, over a text's WordPieces, of static
all-MiniLM-L6-v2 token embeddings (distilled by ``scripts/injection_embeddings.py``), times a
learnt weight vector. The model is linear, so that product is the mean over pieces of one
scalar per piece (``embedding · weights``); only those scalars ship (``pieces`` in
``injection_model.json``, one per vocabulary entry, which is also the tokenizer's vocabulary).
Tokenising follows BERT's basic tokenizer (clean, split CJK characters and punctuation,
lower-case, strip accents) and greedy longest-match WordPiece; results are cached per word.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

MAX_WORD_CHARS = 100
CACHE_LIMIT = 50_000
UNK = "[UNK]"
# ASCII text: runs of letters and digits, and each printable punctuation character (control
# characters are dropped, as BERT's text cleaning does)
_ASCII_WORDS = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")
_ASCII_CONTROL = dict.fromkeys([*range(9), 11, 12, *range(14, 32), 127])


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B81F
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def basic_words(text: str) -> list[str]:
    """BERT's basic tokenizer for an uncased vocabulary: the words WordPiece then splits."""
    if text.isascii():
        return _ASCII_WORDS.findall(text.lower().translate(_ASCII_CONTROL))
    out: list[str] = []
    for raw in text.split():
        word = raw.lower()
        if not word.isascii():
            word = "".join(
                c
                for c in unicodedata.normalize("NFD", word)
                if unicodedata.category(c) != "Mn"
                and not (unicodedata.category(c).startswith("C") or ord(c) == 0xFFFD)
            )
        if word.isascii() and word.isalnum():
            out.append(word)
            continue
        current = ""
        for ch in word:
            if _is_punct(ch) or _is_cjk(ord(ch)):
                if current:
                    out.append(current)
                    current = ""
                out.append(ch)
            else:
                current += ch
        if current:
            out.append(current)
    return out


def wordpieces(word: str, vocab: Mapping[str, object]) -> list[str]:
    """Greedy longest-match-first WordPiece of one basic word (``[UNK]`` when it fails)."""
    if len(word) > MAX_WORD_CHARS:
        return [UNK]
    pieces: list[str] = []
    start = 0
    while start < len(word):
        end = len(word)
        found = None
        while start < end:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                found = piece
                break
            end -= 1
        if found is None:
            return [UNK]
        pieces.append(found)
        start = end
    return pieces


class PieceScorer:
    """Mean of per-piece scalars over a text's WordPieces, cached per basic word."""

    def __init__(self, pieces: Mapping[str, float]) -> None:
        self._pieces = pieces
        self._cache: dict[str, tuple[float, int]] = {}

    def word(self, word: str) -> tuple[float, int]:
        hit = self._cache.get(word)
        if hit is None:
            found = wordpieces(word, self._pieces)
            hit = (sum(self._pieces.get(p, 0.0) for p in found), len(found))
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = hit
        return hit

    def mean(self, text: str) -> float:
        total, n = 0.0, 0
        for w in basic_words(text):
            s, k = self.word(w)
            total += s
            n += k
        return total / n if n else 0.0

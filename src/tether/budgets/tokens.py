"""Prompt tokens counted before the call, to size a budget reservation (:class:`TokenCounter`).

- **The local model** (``kind: local``) counts with its own tokenizer: llama.cpp's, loaded from
  the same GGUF with ``vocab_only`` (the vocabulary and the chat template, not the weights: a
  tenth of a second, once, so counting never waits for the model to load), over the prompt as
  its chat template renders it. Exact.
- **Hosted models** count with :func:`estimate_tokens`, a documented conservative estimate:
  no tokenizer whose data ships inside a package is installed here (tiktoken downloads its
  encodings at run time, which tether never does). The estimate reads the text by character
  class (letter runs, digits, punctuation, whitespace, other scripts by UTF-8 length); against
  a real 49k-vocabulary byte-level BPE (SmolLM2's; hosted models' larger vocabularies give
  fewer tokens for the same text) it **never undercounts by more than** :data:`MAX_UNDERCOUNT`
  (25%) on prose in Latin, Cyrillic, Arabic, CJK and Hangul scripts, code, JSON, numbers,
  emoji, names and addresses, and overcounts English prose about 1.8x (tests/unit/
  test_budget_tokens.py holds it to that). Strings built to look random (mixed-case letters
  and digits) can be undercounted more; the settle after the call charges the real usage.
- Each message adds :data:`PER_MESSAGE` tokens (role and separators) and the request
  :data:`PER_REQUEST` (the reply's priming); an image part counts :data:`PER_IMAGE`, an audio or
  file part :data:`PER_OTHER_PART` (fixed estimates: their real cost depends on size and
  detail, which tether does not decode).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from typing import Any

from tether.config.models import LocalProviderConfig, TetherConfig
from tether.types import Message, ModelRequest

MAX_UNDERCOUNT = 0.25
PER_MESSAGE = 4
PER_REQUEST = 3
PER_IMAGE = 1_500  # OpenAI bills a 1024x1024 high-detail image at 765; Anthropic ~1,600 at most
PER_OTHER_PART = 1_000

_RUNS = re.compile(r"[A-Za-z]+|[0-9]| +|\s+|[\x21-\x7e]|[^\x00-\x7f]")
_VOWELS = frozenset("aeiouyAEIOUY")
_WORDLIKE_CHARS_PER_TOKEN = 3.5  # a run that reads like a word in a Latin-script language
_OTHER_CHARS_PER_TOKEN = 1.5  # a run that does not (consonant clusters, mixed case, ids)
_NON_ASCII_PER_BYTE = 0.8
_HANGUL = ("\uac00", "\ud7af")


def _letters(run: str) -> float:
    vowels = sum(ch in _VOWELS for ch in run)
    cased = run.islower() or run.istitle() or run.isupper()
    wordlike = cased and 0.25 <= vowels / len(run) <= 0.6
    per = _WORDLIKE_CHARS_PER_TOKEN if wordlike else _OTHER_CHARS_PER_TOKEN
    return math.ceil(len(run) / per)


def estimate_tokens(text: str) -> int:
    """A conservative token count of ``text`` for a model whose tokenizer tether does not have
    (see the module docstring for the bound)."""
    total = 0.0
    for match in _RUNS.finditer(text):
        run = match.group()
        first = run[0]
        if first.isascii() and first.isalpha():
            total += _letters(run)
        elif first == " ":
            after = text[match.end() : match.end() + 1]
            joins = len(run) == 1 and after.isascii() and after.isalpha()
            total += 0 if joins else 1  # one space before a word is part of the word's token
        elif first.isspace():
            total += 1 if len(run) <= 2 else 2
        elif first.isascii():
            total += 1  # a digit or a punctuation mark
        elif _HANGUL[0] <= first <= _HANGUL[1]:
            total += 3  # Hangul syllables fall back to their bytes in most vocabularies
        else:
            total += len(first.encode("utf-8")) * _NON_ASCII_PER_BYTE
    return math.ceil(total)


def _part_tokens(part: dict[str, Any], count: Any) -> int:
    kind = part.get("type")
    if kind == "text":
        return int(count(str(part.get("text") or "")))
    if kind in ("image_url", "image", "input_image"):
        return PER_IMAGE
    return PER_OTHER_PART


def estimate_request(request: ModelRequest) -> int:
    """The prompt tokens of ``request`` by :func:`estimate_tokens`, with the per-message and
    per-part allowances; tools and a response schema count as their JSON text."""
    total = PER_REQUEST
    for message in request.messages:
        total += PER_MESSAGE + _message_tokens(message)
    if request.tools:
        total += estimate_tokens(json.dumps(request.tools))
    if request.response_format:
        total += estimate_tokens(json.dumps(request.response_format))
    return total


def _message_tokens(message: Message) -> int:
    total = 0
    if message.parts:
        total += sum(_part_tokens(part, estimate_tokens) for part in message.parts)
    else:
        total += estimate_tokens(message.content or "")
    for call in message.tool_calls or []:
        total += estimate_tokens(call.name) + estimate_tokens(call.arguments) + PER_MESSAGE
    if message.name:
        total += estimate_tokens(message.name)
    return total


class TokenCounter:
    """Counts the prompt tokens of a request to ``provider:model``: exactly for a ``local``
    provider (its own tokenizer), else by the conservative :func:`estimate_tokens`."""

    def __init__(self, config: TetherConfig) -> None:
        self._locals = {
            name: p for name, p in config.providers.items() if isinstance(p, LocalProviderConfig)
        }
        self._vocabularies: dict[str, Any] = {}
        self._lock = threading.Lock()

    def exact(self, ref: str) -> bool:
        """Whether ``ref``'s count comes from its own tokenizer (else it is an estimate)."""
        return ref.partition(":")[0] in self._locals

    def count(self, ref: str, request: ModelRequest) -> int:
        """The prompt tokens of ``request`` sent to ``ref``."""
        context = self._vocabulary(ref)
        if context is None:
            return estimate_request(request)
        from tether.providers.local import _wire_messages

        return int(context.prompt_tokens(_wire_messages(request.messages)))

    def tokenizer(self, ref: str) -> str:
        """What counts for ``ref``: its local provider's name, or ``""`` for the estimate
        (refs with the same tokenizer count alike)."""
        provider = ref.partition(":")[0]
        return provider if provider in self._locals else ""

    async def _loaded(self, ref: str) -> None:
        """A local tokenizer loaded (the first time) off the event loop."""
        provider = self.tokenizer(ref)
        if provider and provider not in self._vocabularies:
            await asyncio.to_thread(self._vocabulary, ref)

    async def acount(self, ref: str, request: ModelRequest) -> int:
        """:meth:`count`, loading a local tokenizer (the first time) off the event loop."""
        await self._loaded(ref)
        return self.count(ref, request)

    async def acount_texts(self, ref: str, texts: list[str]) -> int:
        """The tokens of ``texts`` each alone (an embedding call's inputs: no chat framing),
        loading a local tokenizer (the first time) off the event loop."""
        await self._loaded(ref)
        return sum(self.count_text(ref, text) for text in texts)

    def count_text(self, ref: str, text: str) -> int:
        """The tokens of ``text`` alone (no message framing) for ``ref``."""
        context = self._vocabulary(ref)
        if context is None:
            return estimate_tokens(text)
        return len(context.llama.tokenize(text.encode("utf-8"), add_bos=False))

    def _vocabulary(self, ref: str) -> Any:
        """The local provider's tokenizer (loaded once, vocabulary only); None for others."""
        provider = ref.partition(":")[0]
        config = self._locals.get(provider)
        if config is None:
            return None
        with self._lock:
            found = self._vocabularies.get(provider)
            if found is None:
                found = self._vocabularies[provider] = _load_vocabulary(config)
            return found


def _load_vocabulary(config: LocalProviderConfig) -> Any:
    """The GGUF's tokenizer and chat template, without its weights (``vocab_only``)."""
    from tether.errors import ConfigError
    from tether.providers.local import _Context, default_model_path

    try:
        from llama_cpp import Llama
    except ImportError:
        raise ConfigError(
            "the local provider needs llama-cpp-python: pip install 'tether[local]'"
        ) from None
    path = config.model_path or str(default_model_path())
    llama = Llama(model_path=path, vocab_only=True, verbose=False)
    return _Context.load(llama)

"""What each model can honour, and what a request needs of it.

A fallback that cannot honour a request must not answer it: the local model given ``tools``
answers in prose, a text-only model given an image answers about nothing. So each model of a
chain has :class:`Capabilities`, and the chain skips a model that lacks one the request
:func:`needs` (trace event ``fallback_skipped``; no attempt is made on it).

Capabilities come from ``tether/data/models.json`` (package data that names its sources), per
provider kind: the kind's ``default``, refined by the model's entry (exact name, or a dated
snapshot's base model by the longest listed prefix, as in the price table). A model the table
does not list, e.g. a self-hosted model behind an ``openai`` provider, has every capability its
kind does not deny. ``providers.NAME.capabilities: {MODEL: {vision: false}}`` in tether.yaml
overrides the table for that provider's model (partial: the flags given)::

    needs(request)                        frozenset({"tools", "vision"})
    table.lookup("local", "smollm2")      Capabilities(tools=False, json_schema=True, ...)
    caps.missing(needs(request))          ["tools", "vision"]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, get_args

from tether.types import ModelRequest

Capability = Literal["tools", "json_schema", "json_object", "vision", "audio", "files", "logprobs"]
CAPABILITIES: tuple[str, ...] = get_args(Capability)
_BOUNDARY = "-:@"
# content part types and the capability each needs
_PART_NEEDS = {"image_url": "vision", "image": "vision", "input_audio": "audio", "file": "files"}


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a model can honour: ``tools`` (function calling), ``json_schema`` (``response_format``
    ``json_schema``), ``json_object`` (``response_format`` ``json_object``, JSON mode),
    ``vision`` (image parts), ``audio`` (``input_audio`` parts), ``files`` (``file`` parts,
    e.g. PDFs), ``logprobs``. Every flag defaults to True: an unknown model is not
    second-guessed."""

    tools: bool = True
    json_schema: bool = True
    json_object: bool = True
    vision: bool = True
    audio: bool = True
    files: bool = True
    logprobs: bool = True

    def missing(self, needed: Iterable[str]) -> list[str]:
        """The needed capabilities this model lacks, sorted (empty: it can honour them)."""
        return sorted(n for n in set(needed) if not getattr(self, n))

    def refined(self, flags: Mapping[str, bool | None]) -> Capabilities:
        """These capabilities with ``flags`` applied (a flag given as None is left as it is)."""
        changes = {k: bool(v) for k, v in flags.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self


EVERYTHING = Capabilities()


def needs(request: ModelRequest) -> frozenset[str]:
    """The capabilities ``request`` needs of the model that answers it: ``tools`` when it
    offers tools (unless ``tool_choice`` is ``none``), ``json_schema`` or ``json_object`` for
    that ``response_format``, ``vision``, ``audio`` or ``files`` for image, audio or file
    content parts, ``logprobs`` when it asks for them."""
    needed: set[str] = set()
    if request.tools and request.tool_choice != "none":
        needed.add("tools")
    kind = (request.response_format or {}).get("type")
    if kind in ("json_schema", "json_object"):
        needed.add(str(kind))
    for message in request.messages:
        for part in message.parts or ():
            need = _PART_NEEDS.get(str(part.get("type")))
            if need is not None:
                needed.add(need)
    if request.extra.get("logprobs") or request.extra.get("top_logprobs"):
        needed.add("logprobs")
    return frozenset(needed)


@dataclass(frozen=True, slots=True)
class _KindTable:
    default: Capabilities
    models: Mapping[str, Mapping[str, bool]]


class CapabilityTable:
    """Capabilities per provider kind and model. Build with :meth:`load` (the bundled table)."""

    def __init__(
        self,
        kinds: Mapping[str, tuple[Mapping[str, bool], Mapping[str, Mapping[str, bool]]]],
        *,
        version: str = "",
        source: str = "",
    ) -> None:
        self._kinds = {
            kind: _KindTable(
                EVERYTHING.refined(default), {m.lower(): flags for m, flags in models.items()}
            )
            for kind, (default, models) in kinds.items()
        }
        self.version = version
        self.source = source

    @classmethod
    def load(cls, path: str | None = None) -> CapabilityTable:
        """The bundled table (or a JSON file of the same shape at ``path``)."""
        if path is None:
            text = resources.files("tether").joinpath("data", "models.json").read_text("utf-8")
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        return cls.from_dict(json.loads(text), origin=path or "tether/data/models.json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "<dict>") -> CapabilityTable:
        """Parse the JSON shape; an unknown capability or a non-boolean flag raises ValueError
        naming it."""
        kinds: dict[str, tuple[Mapping[str, bool], Mapping[str, Mapping[str, bool]]]] = {}
        for kind, table in dict(data.get("kinds") or {}).items():
            default = _flags(table.get("default") or {}, f"{origin}: kinds.{kind}.default")
            models = {
                model: _flags(flags, f"{origin}: kinds.{kind}.models.{model}")
                for model, flags in dict(table.get("models") or {}).items()
            }
            kinds[kind] = (default, models)
        return cls(kinds, version=str(data.get("version", "")), source=str(data.get("source", "")))

    def lookup(self, provider_kind: str, model: str) -> Capabilities:
        """The kind's default refined by the model's entry (exact name, else the longest listed
        prefix ending at a ``-``, ``:`` or ``@``); every capability for an unknown kind."""
        table = self._kinds.get(provider_kind)
        if table is None:
            return EVERYTHING
        name = model.lower()
        flags = table.models.get(name)
        if flags is None:
            best = ""
            for listed in table.models:
                if (
                    len(listed) > len(best)
                    and name.startswith(listed)
                    and name[len(listed)] in _BOUNDARY
                ):
                    best = listed
            flags = table.models[best] if best else {}
        return table.default.refined(flags)


def _flags(raw: Any, where: str) -> dict[str, bool]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected an object of capability flags, got {raw!r}")
    flags: dict[str, bool] = {}
    for name, value in raw.items():
        if name not in CAPABILITIES:
            raise ValueError(f"{where}: unknown capability {name!r} (known: {CAPABILITIES})")
        if not isinstance(value, bool):
            raise ValueError(f"{where}.{name}: expected true or false, got {value!r}")
        flags[name] = value
    return flags

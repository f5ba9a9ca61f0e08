"""Eval datasets: JSONL, CSV and YAML rows, and promptfoo configs (see
:mod:`tether.evals.promptfoo`), loaded into a :class:`~tether.evals.types.Dataset`.

A row (one JSON object per JSONL line, one item of a YAML list or of ``{rows: [...]}``)::

    {"vars": {"message": "Capital of France?"},       # the feature's prompt variables
     "messages": [{"role": "user", "content": "..."}],  # or a conversation (vars then fill
                                                        # the system prompt)
     "expected": "Paris",                              # a reference answer (optional)
     "assert": [{"type": "icontains", "value": "paris"}],  # promptfoo's asserts
     "tags": ["geo"], "metadata": {"source": "..."}, "description": "capital"}

promptfoo's test keys are read too: ``options`` (its ``provider`` and ``rubricPrompt`` become
the model-graded asserts' defaults), ``provider``/``providers``/``prompts`` (ignored: the tether
feature defines them). Any other key is an error naming the file, the row and the key.

A CSV file follows promptfoo's conventions: every column is a variable except ``__expected``,
``__expected1`` ... (an assert written ``contains: foo``, ``icontains-any: a,b``,
``levenshtein(0.8): text``, ``llm-rubric: ...``, ``python: ...``; any other text means
``equals``), ``__description``, ``__metric`` (the metric of every assert of the row),
``__metadata:KEY`` (``KEY[]`` splits on commas), ``__config:__expectedN:threshold``, and
tether's ``__tags`` (comma-separated).

A case is identified by the hash of what decides its outcome (``vars``, ``messages``,
``expected`` and its asserts), so the same row in JSONL, CSV or YAML has the same id and a
changed description or tag keeps it; a dataset by the hash of its cases' ids in order. Every
assert's type is checked when the dataset loads: a type tether does not support is an error
naming it, never a silent pass.
"""

from __future__ import annotations

from pathlib import Path

from tether.errors import DatasetError
from tether.evals.promptfoo import is_promptfoo_config, load_promptfoo
from tether.evals.rows import (
    Format,
    Rows,
    case_from_row,
    csv_rows,
    jsonl_rows,
    read_yaml,
    supported_types,
    yaml_rows,
)
from tether.evals.types import Dataset, content_hash


def build(path: Path, rows: Rows, fmt: Format) -> Dataset:
    """A Dataset from ``(where, row)`` pairs, in order."""
    known = supported_types()
    cases = [case_from_row(row, index, where, known) for index, (where, row) in enumerate(rows)]
    return Dataset(
        path=str(path), id=content_hash([case.id for case in cases]), cases=cases, format=fmt
    )


def _missing(path: Path) -> DatasetError:
    return DatasetError(
        f"{path}: no such dataset file; check the path (relative paths in a "
        "config's evals.dataset are relative to the config's folder)"
    )


def load_dataset(path: str | Path) -> Dataset:
    """Load a dataset: ``.jsonl``, ``.csv``, ``.yaml``/``.yml``/``.json`` rows, or a promptfoo
    config (a YAML/JSON mapping with ``tests``, ``prompts`` or ``providers``). Raises
    DatasetError naming the file, the row and the field for anything it cannot use."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return build(path, jsonl_rows(path), "jsonl")
    if suffix == ".csv":
        return build(path, csv_rows(path), "csv")
    if suffix in (".yaml", ".yml", ".json"):
        data = read_yaml(path)
        if is_promptfoo_config(data):
            return load_promptfoo(path, data)
        return build(path, yaml_rows(path, data), "yaml")
    raise DatasetError(
        f"{path}: unknown dataset format {suffix or '(no suffix)'!r}; use .jsonl, .csv, .yaml, "
        ".yml or .json (a promptfoo config is a .yaml/.json with `tests:`)"
    )

"""Dataset rows → :class:`~tether.evals.types.Case`: the row schema, promptfoo's assert strings
and CSV columns, and the JSONL / CSV / YAML readers, shared by :mod:`tether.evals.datasets`
(the formats are described there) and :mod:`tether.evals.promptfoo`."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from tether.errors import DatasetError
from tether.evals.types import Assertion, Case, content_hash

ROW_KEYS = frozenset(("vars", "messages", "expected", "assert", "tags", "metadata", "description"))
IGNORED_KEYS = frozenset(("provider", "providers", "prompts"))  # the feature defines them
UNSUPPORTED_KEYS = {
    "threshold": "a test-level threshold (pass on a weighted score) is not supported; set "
    "`threshold` on each assert instead",
    "providerOutput": "a fixed providerOutput is not supported: tether scores the feature's "
    "own answers",
    "assertScoringFunction": "a custom assertScoringFunction is not supported; use a `python` "
    "assert or a custom scorer (`module:function`)",
}
GRADING_OPTIONS = {  # a test's options that become its model-graded asserts' defaults
    "provider": frozenset(
        ("llm-rubric", "model-graded-closedqa", "factuality", "judge", "similar")
    ),
    "rubricPrompt": frozenset(("llm-rubric", "model-graded-closedqa", "factuality", "judge")),
}
ASSERT_KEYS = frozenset(("type", "value", "threshold", "weight", "metric"))
CSV_RESERVED = ("__prefix", "__suffix", "__providerOutput", "__threshold")


# ------------------------------------------------------------------ promptfoo's assert strings

# promptfoo's base assertion types in its own order (the order its CSV regex tries them)
PROMPTFOO_TYPES = (
    "answer-relevance", "bleu", "classifier", "contains", "contains-all", "contains-any",
    "contains-html", "contains-json", "contains-sql", "contains-xml", "context-faithfulness",
    "context-recall", "context-relevance", "conversation-relevance", "cost", "equals",
    "factuality", "finish-reason", "g-eval", "gleu", "guardrails", "icontains", "icontains-all",
    "icontains-any", "is-html", "is-json", "is-refusal", "is-sql", "is-valid-function-call",
    "is-valid-openai-function-call", "is-valid-openai-tools-call", "is-xml", "javascript",
    "latency", "levenshtein", "llm-rubric", "pi", "meteor", "model-graded-closedqa",
    "model-graded-factuality", "moderation", "perplexity", "perplexity-score", "python", "regex",
    "rouge-n", "ruby", "similar", "similar:cosine", "similar:dot", "similar:euclidean",
    "starts-with", "tool-call-f1", "trace-error-spans", "trace-span-count",
    "trace-span-duration", "search-rubric", "webhook", "word-count",
)  # fmt: skip
_LIST_TYPES = frozenset(("contains-all", "contains-any", "icontains-all", "icontains-any"))
_RAW_TYPES = frozenset(("contains-json", "is-json"))  # value kept untrimmed
_THRESHOLD_TYPES = frozenset((
    "answer-relevance", "classifier", "context-faithfulness", "context-recall",
    "context-relevance", "cost", "latency", "levenshtein", "perplexity-score", "perplexity",
    "rouge-n", "similar", "starts-with",
))  # fmt: skip


@cache
def _assert_pattern() -> re.Pattern[str]:
    types = "|".join(re.escape(t) for t in PROMPTFOO_TYPES)
    return re.compile(rf"^(not-)?({types})(?:\((\d+(?:\.\d+)?)\))?(?::([\s\S]*))?$")


def assertion_from_string(text: str) -> dict[str, Any]:
    """promptfoo's reading of a CSV ``__expected`` cell, as an assert dict: ``contains: foo``,
    ``not-icontains: bar``, ``levenshtein(0.9): text``, ``contains-any: a,b``,
    ``llm-rubric: ...`` (or ``grade: ...``), ``python: ...`` or a ``file://...py`` path,
    ``javascript:``/``fn:``/``eval:``; any other text is ``equals`` to it."""
    if text.startswith(("javascript:", "fn:", "eval:")):
        return {"type": "javascript", "value": text.split(":", 1)[1].strip()}
    if text.startswith(("grade:", "llm-rubric:")):
        return {"type": "llm-rubric", "value": text.split(":", 1)[1]}
    if text.startswith("python:"):
        return {"type": "python", "value": text[7:].strip()}
    if text.startswith("file://"):
        path = text[7:].split(":", 1)[0]
        if path.endswith(".py"):
            return {"type": "python", "value": text.strip()}
        if path.endswith((".js", ".cjs", ".mjs", ".ts")):
            return {"type": "javascript", "value": text.strip()}
    match = _assert_pattern().match(text)
    if match is None:
        return {"type": "equals", "value": text}
    negated, kind, threshold_text, value = match.groups()
    result: dict[str, Any] = {"type": f"not-{kind}" if negated else kind}
    if kind in _LIST_TYPES:
        result["value"] = None if value is None else [part.strip() for part in value.split(",")]
    elif kind in _RAW_TYPES:
        result["value"] = value
    else:
        result["value"] = None if value is None else value.strip()
    if kind in _THRESHOLD_TYPES:
        default = 0.8 if kind == "similar" else 0.75
        result["threshold"] = float(threshold_text) if threshold_text else default
    return result


# ------------------------------------------------------------------ rows → cases


def supported_types() -> frozenset[str]:
    """The assert types (without ``not-``) the scorer registry knows."""
    from tether.evals.scorers.registry import known_types

    return frozenset(known_types())


def check_type(type_: str, where: str, known: frozenset[str]) -> None:
    """DatasetError unless ``type_`` (``not-`` allowed) is one of the ``known`` assert types."""
    base = type_[4:] if type_.startswith("not-") else type_
    if base in known:
        return
    if base == "assert-set":
        detail = "assert-set (nested assert groups) is not supported; list its asserts directly"
    else:
        detail = f"tether does not support the assert type {type_!r}"
    raise DatasetError(
        f"{where}: {detail}; supported types (each also with not-): {', '.join(sorted(known))}"
    )


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DatasetError(f"{where}: assert `{key}` must be a number, not {value!r}")
    return float(value)


def _extra(raw: Mapping[str, Any]) -> dict[str, Any]:
    if raw.keys() <= ASSERT_KEYS:
        return {}
    return {str(k): v for k, v in raw.items() if k not in ASSERT_KEYS}


def parse_assertion(raw: Any, where: str, known: frozenset[str]) -> Assertion:
    """One assert as promptfoo writes it (``{type, value, threshold, weight, metric, ...}``;
    other keys go to ``options``), its type checked."""
    if not isinstance(raw, Mapping):
        raise DatasetError(
            f"{where}: an assert must be a mapping like {{type: contains, value: foo}}, not {raw!r}"
        )
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind:
        raise DatasetError(f"{where}: the assert has no `type` (e.g. type: contains)")
    check_type(kind, where, known)
    threshold = raw.get("threshold")
    metric = raw.get("metric")
    if metric is not None and not isinstance(metric, str):
        raise DatasetError(f"{where}: assert `metric` must be a string, not {metric!r}")
    return Assertion(
        type=kind,
        value=raw.get("value"),
        threshold=None if threshold is None else _number(threshold, where, "threshold"),
        weight=_number(raw.get("weight", 1.0), where, "weight"),
        metric=metric,
        options=_extra(raw),
    )


def _asserts(
    raw: Any, options: Mapping[str, Any], where: str, known: frozenset[str]
) -> tuple[Assertion, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise DatasetError(f"{where}: `assert` must be a list of asserts, not {raw!r}")
    result = []
    for number, item in enumerate(raw, 1):
        if options and isinstance(item, Mapping):
            item = _with_grading(item, options)
        result.append(parse_assertion(item, f"{where}, assert {number}", known))
    return tuple(result)


def _with_grading(item: Mapping[str, Any], options: Mapping[str, Any]) -> Mapping[str, Any]:
    kind = str(item.get("type", ""))
    base = kind[4:] if kind.startswith("not-") else kind
    extra = {
        key: options[key]
        for key, types in GRADING_OPTIONS.items()
        if key in options and key not in item and base in types
    }
    return {**item, **extra} if extra else item


def _options(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: `options` must be a mapping, not {raw!r}")
    for key in raw:
        if key not in GRADING_OPTIONS and key != "disableVarExpansion":
            raise DatasetError(
                f"{where}: test option {key!r} is not supported (tether reads `provider` and "
                "`rubricPrompt`, the judge of model-graded asserts); remove it"
            )
    return raw


def _messages(raw: Any, where: str) -> tuple[Mapping[str, Any], ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise DatasetError(
            f"{where}: `messages` must be a non-empty list of {{role, content}} mappings"
        )
    for number, message in enumerate(raw, 1):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise DatasetError(
                f"{where}: messages[{number}] must be a mapping with a `role` and a `content`, "
                f"e.g. {{role: user, content: Hi}}"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise DatasetError(
                f"{where}: messages[{number}].content must be a string (or a list of parts)"
            )
    return tuple(dict(message) for message in raw)


def _tags(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if not isinstance(raw, list) or not all(isinstance(tag, str) for tag in raw):
        raise DatasetError(f"{where}: `tags` must be a list of strings, not {raw!r}")
    return tuple(raw)


def _mapping(raw: Any, where: str, key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: `{key}` must be a mapping, not {raw!r}")
    if all(type(k) is str for k in raw):
        return dict(raw)
    return {str(k): v for k, v in raw.items()}


def check_keys(row: Mapping[str, Any], where: str) -> None:
    """DatasetError for a key a row may not have (with what to do instead)."""
    for key in row:
        if key in ROW_KEYS or key in IGNORED_KEYS or key == "options":
            continue
        if key in UNSUPPORTED_KEYS:
            raise DatasetError(f"{where}: {UNSUPPORTED_KEYS[key]}")
        raise DatasetError(
            f"{where}: unknown key {key!r}; a row has {', '.join(sorted(ROW_KEYS))} "
            "(put other data under `metadata`)"
        )


def case_from_row(row: Any, index: int, where: str, known: frozenset[str]) -> Case:
    """One row (a mapping) as a :class:`Case` at ``index``; ``where`` names it in errors
    (``FILE: line 3``); ``known`` are the supported assert types (:func:`supported_types`)."""
    if not isinstance(row, Mapping):
        raise DatasetError(f"{where}: a row must be a mapping like {{vars: {{...}}}}, not {row!r}")
    check_keys(row, where)
    options = _options(row.get("options"), where)
    variables = _mapping(row.get("vars"), where, "vars")
    messages = _messages(row.get("messages"), where)
    asserts = _asserts(row.get("assert"), options, where, known)
    expected = row.get("expected")
    description = row.get("description")
    if description is not None and not isinstance(description, str):
        description = str(description)
    identity = {
        "vars": variables,
        "messages": None if messages is None else list(messages),
        "expected": expected,
        "assert": [assertion.to_dict() for assertion in asserts],
    }
    return Case(
        index=index,
        id=content_hash(identity),
        vars=variables,
        messages=messages,
        expected=expected,
        asserts=asserts,
        tags=_tags(row.get("tags"), where),
        metadata=_mapping(row.get("metadata"), where, "metadata"),
        description=description,
    )


# ------------------------------------------------------------------ CSV (promptfoo's columns)


def _config_column(key: str, value: str, configs: dict[int, float], where: str) -> None:
    parts = key[len("__config:") :].split(":")
    match = re.fullmatch(r"__expected(\d*)", parts[0]) if len(parts) == 2 else None
    if match is None or parts[1] != "threshold":
        raise DatasetError(
            f"{where}: column {key!r} is not __config:__expected:threshold or "
            "__config:__expectedN:threshold"
        )
    target = int(match.group(1)) - 1 if match.group(1) else 0
    if not value.strip():
        return  # an empty cell: this row's assert keeps its own threshold
    try:
        configs[target] = float(value)
    except ValueError:
        raise DatasetError(f"{where}: column {key!r}: {value!r} is not a number") from None


def _metadata_column(key: str, value: str, metadata: dict[str, Any]) -> None:
    name = key[len("__metadata:") :]
    if not value.strip():
        return
    if name.endswith("[]"):
        parts = re.split(r"(?<!\\),", value)
        metadata[name[:-2]] = [part.strip().replace("\\,", ",") for part in parts]
    else:
        metadata[name] = value


class _CsvRecord:
    """One CSV record being read: its variables, asserts and special columns."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.row: dict[str, Any] = {}
        self.variables: dict[str, Any] = {}
        self.asserts: list[dict[str, Any]] = []
        self.metadata: dict[str, Any] = {}
        self.configs: dict[int, float] = {}
        self.metric: str | None = None

    def column(self, key: str, value: str) -> None:
        if key.startswith("__expected"):
            if value.strip():
                self.asserts.append(assertion_from_string(value.strip()))
        elif key == "__description":
            self.row["description"] = value
        elif key == "__metric":
            self.metric = value
        elif key == "__tags":
            self.row["tags"] = [tag.strip() for tag in value.split(",") if tag.strip()]
        elif key.startswith("__metadata:"):
            _metadata_column(key, value, self.metadata)
        elif key.startswith("__config:"):
            _config_column(key, value, self.configs, self.where)
        elif key in CSV_RESERVED:
            if value.strip():
                raise DatasetError(
                    f"{self.where}: column {key} is not supported (the tether feature defines "
                    "the prompt and scores its own answers); remove the column"
                )
        else:
            self.variables[key] = value

    def finish(self) -> dict[str, Any]:
        for number, assertion in enumerate(self.asserts):
            if self.metric:
                assertion["metric"] = self.metric
            if number in self.configs:
                assertion["threshold"] = self.configs[number]
                self.metadata["threshold"] = self.configs[number]
        self.row["vars"] = self.variables
        self.row["assert"] = self.asserts
        if self.metadata:
            self.row["metadata"] = self.metadata
        return self.row


def csv_row(record: Mapping[str | None, str | None], where: str) -> dict[str, Any]:
    """A CSV record (header → cell) in promptfoo's conventions, as a row mapping."""
    reading = _CsvRecord(where)
    for key, value in record.items():
        reading.column((key or "").strip(), value or "")
    return reading.finish()


# ------------------------------------------------------------------ files


Rows = Iterator[tuple[str, Any]]  # (where, row)
Format = Literal["jsonl", "csv", "yaml", "promptfoo"]


def jsonl_rows(path: Path) -> Rows:
    """Each non-blank line of a JSONL file, parsed, with ``FILE: line N``."""
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                detail = f"{exc.msg}, column {exc.colno}"
                raise DatasetError(f"{where}: not valid JSON ({detail})") from None


def csv_rows(path: Path) -> Rows:
    """Each record of a CSV file (header row first) as a row, with ``FILE: row N (line L)``."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            for number, record in enumerate(reader, 1):
                where = f"{path}: row {number} (line {reader.line_num})"
                if None in record:
                    raise DatasetError(f"{where}: more cells than the header has columns")
                yield where, csv_row(record, where)
        except csv.Error as exc:
            raise DatasetError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None


def read_yaml(path: Path) -> Any:
    """A YAML (or JSON) file's content; DatasetError with the line of a syntax error."""
    if path.suffix.lower() == ".json":
        try:
            with path.open(encoding="utf-8-sig") as handle:
                return json.load(handle)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with path.open(encoding="utf-8-sig") as handle:
            return yaml.load(handle, Loader=loader)  # a safe loader (C when built)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f": line {mark.line + 1}" if mark is not None else ""
        raise DatasetError(f"{path}{line}: not valid YAML ({exc})") from None


def yaml_rows(path: Path, data: Any) -> Rows:
    """The rows of a YAML/JSON dataset: a list of rows, or ``{rows: [...]}``."""
    if isinstance(data, Mapping) and set(data) == {"rows"}:
        data = data["rows"]
    if not isinstance(data, list):
        raise DatasetError(
            f"{path}: a YAML dataset is a list of rows or {{rows: [...]}} (or a promptfoo "
            "config with `tests:`)"
        )
    for number, row in enumerate(data, 1):
        yield f"{path}: row {number}", row

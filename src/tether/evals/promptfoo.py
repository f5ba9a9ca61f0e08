"""A promptfoo config as an eval dataset.

``promptfooconfig.yaml`` (or any YAML/JSON mapping with ``tests:``) is read for its test cases,
with promptfoo's meaning:

* ``tests``: a list of inline tests, a ``file://`` path (or glob) of a CSV, YAML, JSON or JSONL
  file, or a list mixing both; a CSV file follows promptfoo's columns (``__expected``,
  ``__description``, ``__metadata:KEY``, ... see :mod:`tether.evals.datasets`); a test's
  ``vars`` may also be a YAML file path (or a list of them), merged in order.
* ``defaultTest`` (inline or ``file://``): its asserts run first on every test, its ``vars``,
  ``options`` and ``metadata`` sit under each test's own.
* a var whose value is a list of strings makes one case per value (every combination, unless
  ``options.disableVarExpansion``); a ``file://`` var is read as text (trimmed; YAML as JSON
  text; a glob makes one case per file), as promptfoo renders it.
* ``prompts`` and ``providers`` (and a test's ``provider``/``prompts``) are ignored: the tether
  feature under evaluation defines the prompt and the model. ``scenarios``, Python/JavaScript
  test generators and var scripts are not supported and say so.

Asserts keep promptfoo's keys; a type tether does not support is an error naming it.
"""

from __future__ import annotations

import glob
import itertools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tether.errors import DatasetError
from tether.evals.rows import (
    Rows,
    case_from_row,
    check_keys,
    csv_rows,
    jsonl_rows,
    read_yaml,
    supported_types,
)
from tether.evals.types import Case, Dataset, content_hash

CONFIG_KEYS = ("tests", "prompts", "providers", "defaultTest", "scenarios")
_GLOB = frozenset("*?[")


def is_promptfoo_config(data: Any) -> bool:
    """Whether a parsed YAML/JSON file is a promptfoo config (not a list of rows)."""
    return isinstance(data, Mapping) and any(key in data for key in CONFIG_KEYS)


def _strip(reference: str) -> str:
    return reference[7:] if reference.startswith("file://") else reference


def _paths(reference: str, base: Path, where: str) -> list[Path]:
    """The files a ``file://`` reference (a path or a glob, relative to ``base``) names."""
    if reference.startswith(("huggingface://", "http://", "https://")):
        raise DatasetError(
            f"{where}: {reference!r}: remote test sources are not supported; download the rows "
            "to a local CSV/JSONL file and reference that"
        )
    target = base / _strip(reference)
    if _GLOB & set(str(target)):
        found = sorted(Path(p) for p in glob.glob(str(target), recursive=True))
    else:
        found = [target] if target.is_file() else []
    if not found:
        raise DatasetError(f"{where}: no file matches {reference!r} (relative to {base})")
    return found


def _file_tests(path: Path, where: str) -> Rows:
    """The tests of one tests file, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from csv_rows(path)
    elif suffix == ".jsonl":
        yield from jsonl_rows(path)
    elif suffix in (".yaml", ".yml", ".json"):
        data = read_yaml(path)
        items = data if isinstance(data, list) else [data]
        for number, item in enumerate(items, 1):
            yield f"{path}: test {number}", _with_var_files(item, path.parent, where)
    else:
        raise DatasetError(
            f"{where}: {path.name}: test files of type {suffix or '(none)'!r} are not supported "
            "(Python/JavaScript generators included); use CSV, YAML, JSON or JSONL"
        )


def _source(reference: Any, base: Path, where: str) -> Rows:
    if not isinstance(reference, str):
        raise DatasetError(f"{where}: a tests file must be a path string, not {reference!r}")
    for path in _paths(reference, base, where):
        yield from _file_tests(path, where)


def _with_var_files(test: Any, base: Path, where: str) -> Any:
    """A test whose ``vars`` is a YAML file path (or a list of them), with those files read
    and merged in order (promptfoo's ``readTestFiles``)."""
    if not isinstance(test, Mapping):
        return test
    refs = test.get("vars")
    if not isinstance(refs, str) and not (
        isinstance(refs, list) and refs and all(isinstance(r, str) for r in refs)
    ):
        return test
    merged: dict[str, Any] = {}
    for reference in [refs] if isinstance(refs, str) else refs:
        for path in _paths(reference, base, where):
            data = read_yaml(path)
            if not isinstance(data, Mapping):
                raise DatasetError(f"{where}: vars file {path} must hold a mapping of vars")
            merged.update(data)
    return {**test, "vars": merged}


def _tests(raw: Any, base: Path, config: Path) -> Rows:
    """Every test of ``tests:``, with where it was written."""
    where = f"{config}: tests"
    if isinstance(raw, str):
        yield from _source(raw, base, where)
        return
    if isinstance(raw, Mapping) and "path" in raw:
        yield from _source(raw["path"], base, where)
        return
    if not isinstance(raw, list):
        raise DatasetError(
            f"{where}: must be a list of tests or a file:// path to a CSV/YAML/JSONL file"
        )
    for number, item in enumerate(raw, 1):
        item_where = f"{config}: tests[{number}]"
        if isinstance(item, str):
            yield from _source(item, base, item_where)
        elif isinstance(item, Mapping) and set(item) <= {"path", "config"} and "path" in item:
            yield from _source(item["path"], base, item_where)
        else:
            yield item_where, _with_var_files(item, base, item_where)


def _default_test(raw: Any, base: Path, config: Path) -> Mapping[str, Any]:
    where = f"{config}: defaultTest"
    if raw is None:
        return {}
    if isinstance(raw, str):
        path = _paths(raw, base, where)[0]
        raw = read_yaml(path)
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{where}: must be a mapping (vars, assert, options, metadata)")
    check_keys(raw, where)
    result = _with_var_files(raw, base, where)
    assert isinstance(result, Mapping)
    return result


def _merged(test: Any, default: Mapping[str, Any], where: str) -> Any:
    """A test with ``defaultTest`` applied as promptfoo's evaluator does."""
    if not isinstance(test, Mapping) or not default:
        return test
    merged = {**test}
    for key in ("vars", "options", "metadata"):
        under, over = default.get(key), test.get(key)
        if under is None:
            continue
        if not isinstance(under, Mapping) or not isinstance(over, Mapping | None):
            raise DatasetError(f"{where}: `{key}` (and defaultTest's) must be mappings")
        merged[key] = {**under, **(over or {})}
    under_asserts = default.get("assert")
    if under_asserts:
        own = test.get("assert") or []
        if not isinstance(under_asserts, list) or not isinstance(own, list):
            raise DatasetError(f"{where}: `assert` (and defaultTest's) must be lists")
        merged["assert"] = [*under_asserts, *own]
    return merged


def _var_value(name: str, value: Any, base: Path, where: str) -> Any:
    """A var as promptfoo renders it: a ``file://`` path is read (text trimmed, YAML as JSON
    text)."""
    if not isinstance(value, str) or not value.startswith("file://"):
        return value
    path = base / value[7:]
    suffix = path.suffix.lower()
    if suffix in (".py", ".js", ".cjs", ".mjs", ".ts"):
        raise DatasetError(
            f"{where}: var {name!r}: script vars ({value}) are not supported; write the value "
            "into the dataset or a text file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{where}: var {name!r}: cannot read {path} ({exc.strerror})") from None
    if suffix in (".yaml", ".yml"):
        return json.dumps(read_yaml(path), separators=(",", ":"), ensure_ascii=False)
    return text.strip()


def _choices(value: Any, base: Path, where: str) -> list[Any]:
    """The values one var takes across expanded cases (promptfoo's generateVarCombinations)."""
    if isinstance(value, str) and value.startswith("file://"):
        if _GLOB & set(value):
            return [f"file://{p}" for p in _paths(value, base, where)]
        return [value]
    if isinstance(value, list) and (not value or isinstance(value[0], str)):
        return list(value)
    return [value]


def _expanded(row: Any, base: Path, where: str) -> Iterator[Any]:
    """One row per combination of its list-valued vars, ``file://`` vars read."""
    if not isinstance(row, Mapping) or not isinstance(row.get("vars"), Mapping):
        yield row
        return
    variables: Mapping[str, Any] = row["vars"]
    options = row.get("options")
    if isinstance(options, Mapping) and options.get("disableVarExpansion"):
        combos: Iterator[tuple[Any, ...]] = iter([tuple(variables.values())])
    else:
        combos = itertools.product(*(_choices(v, base, where) for v in variables.values()))
    for combo in combos:
        values = {
            name: _var_value(name, value, base, where)
            for name, value in zip(variables, combo, strict=True)
        }
        yield {**row, "vars": values}


def load_promptfoo(path: Path, data: Mapping[str, Any]) -> Dataset:
    """The test cases of a parsed promptfoo config read from ``path``."""
    base = path.parent
    if data.get("scenarios"):
        raise DatasetError(
            f"{path}: scenarios are not supported; list their tests under `tests:` (with the "
            "scenario's vars in each)"
        )
    if data.get("tests") is None:
        raise DatasetError(f"{path}: the promptfoo config has no `tests:`; add test cases")
    default = _default_test(data.get("defaultTest"), base, path)
    known = supported_types()
    cases: list[Case] = []
    for where, test in _tests(data["tests"], base, path):
        merged = _merged(test, default, where)
        for row in _expanded(merged, base, where):
            cases.append(case_from_row(row, len(cases), where, known))
    return Dataset(
        path=str(path),
        id=content_hash([case.id for case in cases]),
        cases=cases,
        format="promptfoo",
    )

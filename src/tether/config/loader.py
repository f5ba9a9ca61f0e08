"""Load ``tether.yaml``: YAML with line numbers, ``${ENV_VAR}`` interpolation, strict validation.

Every problem becomes a :class:`~tether.errors.ConfigError` whose message reads
``FILE:LINE: yaml.path: what is wrong`` followed by ``fix: what to do``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from tether.config.models import ON_FAILURE_HINT, TetherConfig
from tether.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ROOT_PATH = re.compile(r"^(?:Value error, )?((?:[\w\-]+\.)*[\w\-]+): (.*)$", re.S)

Path_ = tuple[str | int, ...]
_PROVIDER_KINDS = ("local", "openai", "anthropic", "scripted")


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration problem, located."""

    file: str
    line: int
    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.path or '<root>'}: {self.message}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text


@dataclass(frozen=True, slots=True)
class SourceMap:
    """Where each YAML path of a loaded config is written: locates problems found after
    validation (a guard that cannot be built, a template that does not parse)."""

    file: str
    lines: Mapping[Path_, int]

    def problem(self, path: Path_, message: str, fix: str = "") -> Problem:
        return Problem(self.file, _line_for(path, self.lines), _dotted(path), message, fix)


class ConfigProblems(ConfigError):
    """One or more located configuration problems."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _read(path: str | os.PathLike[str]) -> tuple[str, str]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no such file; create one with `tether init` or pass --config PATH"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it ({exc.strerror})") from None
    return text, str(file)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> TetherConfig:
    """Read, interpolate and validate a config file. Raises ConfigError naming file and line."""
    return load_located(path, env)[0]


def load_located(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[TetherConfig, SourceMap]:
    """:func:`load_config`, and where each key is written (to locate later errors)."""
    text, filename = _read(path)
    return parse_located(text, filename, os.environ if env is None else env)


def parse_config(text: str, filename: str, env: Mapping[str, str]) -> TetherConfig:
    return parse_located(text, filename, env)[0]


def parse_located(
    text: str, filename: str, env: Mapping[str, str]
) -> tuple[TetherConfig, SourceMap]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigProblems(
            [Problem(filename, line, "", f"not valid YAML: {problem}", "fix the YAML syntax")]
        ) from None
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    data = _to_python(node, (), lines, env, problems, filename) if node is not None else {}
    if problems:
        raise ConfigProblems(problems)
    if not isinstance(data, dict):
        raise ConfigProblems(
            [Problem(filename, 1, "", "the file must be a mapping", "start with `features:`")]
        )
    try:
        config = TetherConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigProblems(_problems(exc, lines, filename)) from None
    return config, SourceMap(filename, lines)


def _to_python(
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    env: Mapping[str, str],
    problems: list[Problem],
    filename: str,
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in out:
                problems.append(
                    Problem(
                        filename,
                        key_node.start_mark.line + 1,
                        _dotted((*path, key)),
                        "this key appears twice in the same mapping",
                        "keep one of them (YAML would silently use the last)",
                    )
                )
            out[key] = _to_python(value_node, (*path, key), lines, env, problems, filename)
            lines[(*path, key)] = key_node.start_mark.line + 1  # where the key is written
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_python(child, (*path, i), lines, env, problems, filename)
            for i, child in enumerate(node.value)
        ]
    value = yaml.SafeLoader("").construct_object(node)
    if isinstance(value, str) and "${" in value:
        return _interpolate(value, path, lines[path], env, problems, filename)
    return value


def _interpolate(
    value: str,
    path: Path_,
    line: int,
    env: Mapping[str, str],
    problems: list[Problem],
    filename: str,
) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(
            Problem(
                filename,
                line,
                _dotted(path),
                f"environment variable {name} is not set",
                f"export {name}=... or write ${{{name}:-default}}",
            )
        )
        return ""

    return _ENV.sub(replace, value)


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def _line_for(path: Path_, lines: Mapping[Path_, int]) -> int:
    if path and path not in lines:  # a guard's `- name: {key: ...}` nests its key one deeper
        deeper = [n for p, n in lines.items() if p[-1:] == path[-1:] and p[:-2] == path[:-1]]
        if len(deeper) == 1 and len(path) > 1:
            return deeper[0]
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 0


def _problems(exc: ValidationError, lines: dict[Path_, int], filename: str) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = _strip_union_tag(tuple(err["loc"]))
        message = str(err["msg"])
        if not loc:
            match = _ROOT_PATH.match(message)
            if match:
                loc = tuple(int(p) if p.isdigit() else p for p in match.group(1).split("."))
                message = match.group(2)
        message = message.removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key `{loc[-1]}`"
        problems.append(
            Problem(
                filename,
                _line_for(loc, lines),
                _dotted(loc),
                message,
                _fix(err["type"], loc, err.get("ctx") or {}),
            )
        )
    return sorted(problems, key=lambda p: p.line)


def _strip_union_tag(loc: Path_) -> Path_:
    """Pydantic puts the discriminator value after the provider name; YAML has no such level."""
    if len(loc) >= 3 and loc[0] == "providers" and loc[2] in _PROVIDER_KINDS:
        return (*loc[:2], *loc[3:])
    return loc


def _allowed_keys(loc: Path_) -> list[str]:
    """The keys a mapping at ``loc`` accepts (walking the config models), or [] if unknown."""
    model: Any = TetherConfig
    named_levels = {"features", "providers"}
    skip_next = False
    for part in loc:
        if skip_next:
            skip_next = False
            continue
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        if part in named_levels and model is TetherConfig:
            skip_next = True
            annotation = get_args(annotation)[1] if get_args(annotation) else None
        model = annotation
    fields = getattr(model, "model_fields", None)
    if not fields:
        return []
    return sorted(f.alias or name for name, f in fields.items())


def _fix(kind: str, loc: Path_, ctx: dict[str, Any]) -> str:
    if isinstance(ctx.get("fix"), str):  # a validator that knows the fix says it
        return str(ctx["fix"])
    field = str(loc[-1]) if loc else ""
    if kind == "missing" and field == "on_failure":
        return ON_FAILURE_HINT
    if kind == "missing":
        return f"add `{field}:` here"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(field, allowed, n=1)
        if close:
            return f"did you mean `{close[0]}`? (allowed here: {', '.join(allowed)})"
        if allowed:
            return f"remove `{field}`; allowed here: {', '.join(allowed)}"
        return f"remove `{field}` or check its spelling (`tether init` writes an example)"
    if kind in ("literal_error", "union_tag_invalid"):
        expected = ctx.get("expected") or ctx.get("expected_tags")
        return f"use one of: {expected}" if expected else "use one of the documented values"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"give `{field}` a value of the expected type"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "change the value to fit the bound"
    return "see `tether init` for a working example"

"""Eval datasets: JSONL, CSV, YAML rows and promptfoo configs, loaded from real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tether.errors import DatasetError
from tether.evals.datasets import load_dataset
from tether.evals.rows import assertion_from_string
from tether.evals.types import Assertion


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[object]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


ROWS = [
    {
        "vars": {"question": "Capital of France?"},
        "assert": [{"type": "icontains", "value": "paris"}],
    },
    {"vars": {"question": "2+2?"}, "assert": [{"type": "equals", "value": "4"}]},
]


# ------------------------------------------------------------------ formats and hashes


def test_same_rows_in_every_format_are_the_same_dataset(tmp_path: Path) -> None:
    from_jsonl = load_dataset(jsonl(tmp_path / "d.jsonl", ROWS))
    from_csv = load_dataset(
        write(
            tmp_path / "d.csv", "question,__expected\nCapital of France?,icontains: paris\n2+2?,4\n"
        )
    )
    from_yaml = load_dataset(
        write(
            tmp_path / "d.yaml",
            "rows:\n"
            "  - vars: {question: Capital of France?}\n"
            "    assert: [{type: icontains, value: paris}]\n"
            "  - vars: {question: 2+2?}\n"
            "    assert: [{type: equals, value: '4'}]\n",
        )
    )
    assert [c.id for c in from_jsonl.cases] == [c.id for c in from_csv.cases]
    assert [c.id for c in from_jsonl.cases] == [c.id for c in from_yaml.cases]
    assert from_jsonl.id == from_csv.id == from_yaml.id
    assert (from_jsonl.format, from_csv.format, from_yaml.format) == ("jsonl", "csv", "yaml")
    first = from_csv.cases[0]
    assert first.index == 0 and from_csv.cases[1].index == 1
    assert first.vars == {"question": "Capital of France?"}
    assert first.asserts == (Assertion("icontains", "paris"),)
    # ids follow content: another order is another dataset, another answer another case
    reordered = load_dataset(jsonl(tmp_path / "r.jsonl", ROWS[::-1]))
    assert reordered.id != from_jsonl.id
    assert {c.id for c in reordered.cases} == {c.id for c in from_jsonl.cases}
    changed = load_dataset(jsonl(tmp_path / "c.jsonl", [ROWS[0], {**ROWS[1], "expected": "4"}]))
    assert changed.cases[0].id == from_jsonl.cases[0].id
    assert changed.cases[1].id != from_jsonl.cases[1].id


def test_row_fields(tmp_path: Path) -> None:
    row = {
        "messages": [{"role": "user", "content": "Hi"}],
        "vars": {"tone": "warm"},
        "expected": "Hello!",
        "assert": [{"type": "not-contains", "value": "bye", "weight": 2, "metric": "polite",
                    "transform": "output.strip()"}],
        "tags": ["greeting"],
        "metadata": {"source": "support"},
        "description": "greets back",
    }  # fmt: skip
    case = load_dataset(jsonl(tmp_path / "d.jsonl", [row])).cases[0]
    assert case.messages == ({"role": "user", "content": "Hi"},)
    assert case.vars == {"tone": "warm"}
    assert case.expected == "Hello!"
    assert case.asserts == (
        Assertion("not-contains", "bye", weight=2.0, metric="polite",
                  options={"transform": "output.strip()"}),
    )  # fmt: skip
    assert (case.tags, case.metadata, case.description) == (
        ("greeting",),
        {"source": "support"},
        "greets back",
    )
    # labels are not identity: a new description or tag keeps the case's id
    relabelled = {**row, "description": "other", "tags": ["x"], "metadata": {}}
    assert load_dataset(jsonl(tmp_path / "e.jsonl", [relabelled])).cases[0].id == case.id


def test_blank_lines_are_skipped_and_errors_name_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl", json.dumps(ROWS[0]) + "\n\n" + '{"vars": {"q": 1}, "answer": 2}\n'
    )
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert f"{path}: line 3" in message and "'answer'" in message and "metadata" in message
    write(path, json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"d\.jsonl: line 2: not valid JSON"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"vars": ["a"]}, "`vars` must be a mapping"),
        ({"messages": [{"content": "hi"}]}, r"messages\[1\] must be a mapping with a `role`"),
        ({"tags": [1]}, "`tags` must be a list of strings"),
        ({"assert": {"type": "equals"}}, "`assert` must be a list"),
        ({"assert": [{"value": "x"}]}, "assert 1: the assert has no `type`"),
        ({"assert": [{"type": "equals", "threshold": "high"}]}, "`threshold` must be a number"),
        ({"threshold": 0.5}, "test-level threshold"),
        ({"options": {"transform": "x"}}, "test option 'transform' is not supported"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path: Path, row: object, expected: str) -> None:
    path = jsonl(tmp_path / "bad.jsonl", [ROWS[0], row])
    with pytest.raises(DatasetError, match=expected) as caught:
        load_dataset(path)
    assert f"{path}: line 2" in str(caught.value)


def test_unsupported_assert_type_is_an_error_naming_it(tmp_path: Path) -> None:
    row = {"vars": {"q": "x"}, "assert": [{"type": "contains", "value": "a"}, {"type": "not-bleu"}]}
    path = jsonl(tmp_path / "d.jsonl", [row])
    with pytest.raises(DatasetError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert f"{path}: line 1, assert 2" in message
    assert "'not-bleu'" in message and "supported types" in message and "icontains" in message
    row["assert"] = [{"type": "assert-set", "assert": [{"type": "contains", "value": "a"}]}]
    with pytest.raises(DatasetError, match="assert-set"):
        load_dataset(jsonl(tmp_path / "s.jsonl", [row]))


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match=r"unknown dataset format '\.txt'"):
        load_dataset(write(tmp_path / "d.txt", "x"))
    with pytest.raises(DatasetError, match="a YAML dataset is a list of rows"):
        load_dataset(write(tmp_path / "d.yaml", "question: hi\n"))
    with pytest.raises(DatasetError, match=r"d2\.yaml: line 3: not valid YAML"):
        load_dataset(write(tmp_path / "d2.yaml", "- vars: {a: 1}\n- vars: [\n"))


# ------------------------------------------------------------------ CSV, promptfoo's columns


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("contains: foo", {"type": "contains", "value": "foo"}),
        ("not-icontains:Bar ", {"type": "not-icontains", "value": "Bar"}),
        ("icontains-any: a, b,c", {"type": "icontains-any", "value": ["a", "b", "c"]}),
        ("levenshtein(0.9): kitten", {"type": "levenshtein", "value": "kitten", "threshold": 0.9}),
        ("rouge-n: the cat", {"type": "rouge-n", "value": "the cat", "threshold": 0.75}),
        ("similar: hello", {"type": "similar", "value": "hello", "threshold": 0.8}),
        ("is-json", {"type": "is-json", "value": None}),
        ("regex: ^\\d+$", {"type": "regex", "value": "^\\d+$"}),
        ("grade: is polite", {"type": "llm-rubric", "value": " is polite"}),
        ("llm-rubric: is polite", {"type": "llm-rubric", "value": " is polite"}),
        ("python: len(output) < 9", {"type": "python", "value": "len(output) < 9"}),
        ("file://checks/score.py", {"type": "python", "value": "file://checks/score.py"}),
        ("javascript: output.length", {"type": "javascript", "value": "output.length"}),
        ("Paris", {"type": "equals", "value": "Paris"}),
        ("contains-everything: x", {"type": "equals", "value": "contains-everything: x"}),
    ],
)
def test_expected_cells_read_as_promptfoo_does(cell: str, expected: dict[str, object]) -> None:
    assert assertion_from_string(cell) == expected


def test_csv_special_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.csv",
        "question,__expected1,__expected2,__description,__metric,__metadata:topic,"
        "__metadata:langs[],__config:__expected2:threshold,__tags\n"
        '"Hi, there",contains: hello,"levenshtein: hello there",greeting,tone,small talk,'
        '"en,fr\\,be",0.6,"smoke, fast"\n'
        "Bye,,,,,,,,\n",
    )
    data = load_dataset(path)
    first, second = data.cases
    assert first.vars == {"question": "Hi, there"}
    assert first.asserts == (
        Assertion("contains", "hello", metric="tone"),
        Assertion("levenshtein", "hello there", threshold=0.6, metric="tone"),
    )
    assert first.description == "greeting"
    assert first.metadata == {"topic": "small talk", "langs": ["en", "fr,be"], "threshold": 0.6}
    assert first.tags == ("smoke", "fast")
    assert second.vars == {"question": "Bye"} and second.asserts == () and second.tags == ()


def test_csv_errors_name_row_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "q,__expected\na,contains: a\nb,bleu: b\n")
    with pytest.raises(DatasetError, match=r"d\.csv: row 2 \(line 3\).*'bleu'"):
        load_dataset(path)
    write(path, "q,__prefix\na,Answer briefly:\n")
    with pytest.raises(DatasetError, match=r"row 1 \(line 2\): column __prefix is not supported"):
        load_dataset(path)
    write(path, "q\na,b\n")
    with pytest.raises(DatasetError, match="more cells than the header"):
        load_dataset(path)


# ------------------------------------------------------------------ promptfoo configs


def test_promptfoo_config_with_default_test(tmp_path: Path) -> None:
    config = write(
        tmp_path / "promptfooconfig.yaml",
        """\
description: capitals
prompts: ["Answer: {{question}}"]
providers: [openai:gpt-4o-mini]
defaultTest:
  vars: {style: terse, question: unused}
  assert:
    - type: not-icontains
      value: sorry
  options:
    provider: local:smollm2
  metadata: {suite: geo, owner: a}
tests:
  - description: france
    vars: {question: Capital of France?}
    assert:
      - {type: icontains, value: paris, weight: 2}
      - {type: llm-rubric, value: names a city}
    metadata: {owner: b}
  - vars: {question: Capital of Italy?}
""",
    )
    data = load_dataset(config)
    assert data.format == "promptfoo" and len(data) == 2
    first, second = data.cases
    assert first.vars == {"style": "terse", "question": "Capital of France?"}
    assert [a.type for a in first.asserts] == ["not-icontains", "icontains", "llm-rubric"]
    assert first.asserts[1].weight == 2.0
    assert first.asserts[2].options == {"provider": "local:smollm2"}  # the test's grader
    assert first.asserts[0].options == {}
    assert first.metadata == {"suite": "geo", "owner": "b"}
    assert first.description == "france"
    assert second.vars == {"style": "terse", "question": "Capital of Italy?"}
    assert [a.type for a in second.asserts] == ["not-icontains"]
    # the same tests as plain rows are the same dataset
    rows = [{"vars": dict(c.vars), "assert": [a.to_dict() for a in c.asserts]} for c in data.cases]
    assert load_dataset(jsonl(tmp_path / "same.jsonl", rows)).id == data.id


def test_promptfoo_tests_from_csv_with_expected_columns(tmp_path: Path) -> None:
    write(
        tmp_path / "data" / "tests.csv",
        "question,__expected,__expected2\n"
        "Capital of France?,icontains: paris,not-contains: sorry\n"
        "Largest planet?,Jupiter,\n",
    )
    write(tmp_path / "data" / "more.yaml", "- vars: {question: Smallest planet?}\n")
    config = write(
        tmp_path / "promptfooconfig.yaml",
        "prompts: ['{{question}}']\n"
        "defaultTest: {assert: [{type: latency, threshold: 5000}]}\n"
        "tests:\n  - file://data/tests.csv\n  - file://data/*.yaml\n"
        "  - vars: {question: inline}\n",
    )
    data = load_dataset(config)
    assert [c.vars["question"] for c in data.cases] == [
        "Capital of France?",
        "Largest planet?",
        "Smallest planet?",
        "inline",
    ]
    assert data.cases[0].asserts == (
        Assertion("latency", threshold=5000.0),
        Assertion("icontains", "paris"),
        Assertion("not-contains", "sorry"),
    )
    assert data.cases[1].asserts[1] == Assertion("equals", "Jupiter")
    assert [c.index for c in data.cases] == [0, 1, 2, 3]
    single = write(tmp_path / "single.yaml", "tests: file://data/tests.csv\n")
    assert len(load_dataset(single)) == 2


def test_promptfoo_vars_from_files_and_expansion(tmp_path: Path) -> None:
    write(tmp_path / "docs" / "a.txt", "first document\n")
    write(tmp_path / "docs" / "b.txt", "second document\n")
    write(tmp_path / "ctx.yaml", "city: Paris\nsize: 2\n")
    write(tmp_path / "vars" / "common.yaml", "lang: en\n")
    config = write(
        tmp_path / "promptfooconfig.yaml",
        """\
tests:
  - vars: {doc: file://docs/a.txt, meta: file://ctx.yaml, tone: [warm, cold]}
  - vars: {doc: file://docs/*.txt}
  - vars: {items: [[1, 2]], words: [a, b]}
    options: {disableVarExpansion: true}
  - vars: file://vars/common.yaml
    assert: [{type: equals, value: ok}]
""",
    )
    cases = load_dataset(config).cases
    assert [dict(c.vars) for c in cases] == [
        {"doc": "first document", "meta": '{"city":"Paris","size":2}', "tone": "warm"},
        {"doc": "first document", "meta": '{"city":"Paris","size":2}', "tone": "cold"},
        {"doc": "first document"},
        {"doc": "second document"},
        {"items": [[1, 2]], "words": ["a", "b"]},
        {"lang": "en"},
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scenarios: [{config: [], tests: []}]\ntests: []\n", "scenarios are not supported"),
        ("prompts: [x]\n", "has no `tests:`"),
        ("tests: file://missing.csv\n", "no file matches 'file://missing.csv'"),
        ("tests: file://gen.py\n", "no file matches"),
        ("tests: [{vars: {a: file://run.py}}]\n", "script vars"),
        ("tests: [{vars: {a: 1}, assert: [{type: javascript, value: 'x'}]}]\n", "'javascript'"),
        ("tests: [{vars: {a: 1}, providerOutput: hi}]\n", "providerOutput is not supported"),
        ("tests: https://example.com/t.csv\n", "remote test sources are not supported"),
    ],
)
def test_promptfoo_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(DatasetError, match=expected) as caught:
        load_dataset(write(tmp_path / "promptfooconfig.yaml", text))
    assert "promptfooconfig.yaml" in str(caught.value)


def test_promptfoo_python_generator_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "gen.py", "def generate_tests():\n    return []\n")
    config = write(tmp_path / "promptfooconfig.yaml", "tests: file://gen.py\n")
    with pytest.raises(DatasetError, match=r"'\.py' are not supported"):
        load_dataset(config)


def test_json_config_and_rows(tmp_path: Path) -> None:
    config = {"prompts": ["{{q}}"], "tests": [{"vars": {"q": "a"}}]}
    assert load_dataset(write(tmp_path / "c.json", json.dumps(config))).format == "promptfoo"
    rows = load_dataset(write(tmp_path / "r.json", json.dumps(ROWS)))
    assert rows.format == "yaml" and rows.id == load_dataset(jsonl(tmp_path / "r.jsonl", ROWS)).id


def test_check_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tether.cli.datasets import app

    path = jsonl(tmp_path / "d.jsonl", [*ROWS, {"messages": [{"role": "user", "content": "x"}]}])
    result = CliRunner().invoke(app, ["check", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["cases"] == 3 and summary["conversations"] == 1
    assert summary["asserts"] == {"equals": 1, "icontains": 1}
    assert summary["dataset_id"] == load_dataset(path).id
    jsonl(path, [{"vars": {}, "assert": [{"type": "bleu"}]}])
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2 and "line 1, assert 1" in result.stderr

"""Training and evaluation files: every bad line named by its number, and the scores' text normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.tune.data import DataError, read_examples, split
from hearth.tune.evaluate import normalise, schema_valid


def test_reads_messages_and_prompt_completion(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text(
        json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                                 {"role": "assistant", "content": "a"}], "answers": ["A"]}) + "\n\n"
        + json.dumps({"prompt": "q2", "completion": "a2"}) + "\n"
    )
    ex = read_examples(p)
    assert [e.line for e in ex] == [1, 3] and ex[0].answer == "a" and ex[0].answers == ["A"]
    assert ex[1].prompt == [{"role": "user", "content": "q2"}]


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("[1, 2]", "expected an object"),
        ('{"messages": []}', "at least a user and an assistant"),
        ('{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}', "messages[1]"),
        ('{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}]}', "assistant's answer"),
        ('{"messages": [{"role": "system", "content": "q"}, {"role": "assistant", "content": "a"}]}', "no user"),
        ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "schema": 3}',
         "schema"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, needle: str) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n" + line + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl line 2") as e:
        read_examples(p)
    assert needle in e.value.message


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no examples"):
        read_examples(tmp_path / "e.jsonl")
    with pytest.raises(DataError, match="no such file"):
        read_examples(tmp_path / "missing.jsonl")


def test_split_is_reproducible(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": "a"}) + "\n" for i in range(20)))
    ex = read_examples(p)
    a, b = split(ex, 0.25, seed=3)
    assert len(a) == 15 and len(b) == 5 and split(ex, 0.25, seed=3) == (a, b)


def test_normalise_and_schema() -> None:
    assert normalise("  Quillmere!  ") == normalise("quillmere") == "quillmere"
    assert schema_valid('```json\n{"a": 1}\n```', {"type": "object", "required": ["a"]})
    assert not schema_valid('{"b": 1}', {"type": "object", "required": ["a"]})
    assert not schema_valid("not json", {"type": "object"})

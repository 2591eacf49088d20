"""Training and evaluation data: chat-format JSONL, one conversation per line, as OpenAI's fine-tuning takes it:

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}]}

`{"prompt": "...", "completion": "..."}` lines are taken too. Evaluation lines may add `answers` (texts that
count as right; default: the last assistant message) and `schema` (a JSON schema the answer must meet).
A bad line stops everything with its line number: a model trained on a silently skipped half is worse
than no model.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.core.errors import BadRequest

_ROLES = {"system", "user", "assistant"}


class DataError(BadRequest):
    pass


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, str]]  # ends with the assistant answer to learn (or to compare with)
    line: int
    answers: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None

    @property
    def prompt(self) -> list[dict[str, str]]:
        return self.messages[:-1]

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]


def read_examples(path: Path) -> list[Example]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out = []
    with path.open(encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if raw.strip():
                out.append(_parse(path.name, n, raw))
    if not out:
        raise DataError(f"{path.name}: no examples")
    return out


def _parse(name: str, n: int, raw: str) -> Example:
    where = f"{name} line {n}"
    try:
        d = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(d, dict):
        raise DataError(f"{where}: expected an object with \"messages\"")
    if "messages" not in d and isinstance(d.get("prompt"), str) and isinstance(d.get("completion"), str):
        d["messages"] = [{"role": "user", "content": d["prompt"]}, {"role": "assistant", "content": d["completion"]}]
    msgs = d.get("messages")
    if not isinstance(msgs, list) or len(msgs) < 2:
        raise DataError(f"{where}: \"messages\" must list at least a user and an assistant message")
    clean = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: messages[{i}] needs a role (system, user or assistant) and a text content")
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "assistant" or not clean[-1]["content"].strip():
        raise DataError(f"{where}: the last message must be the assistant's answer")
    if not any(m["role"] == "user" for m in clean[:-1]):
        raise DataError(f"{where}: no user message before the answer")
    answers = d.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise DataError(f"{where}: \"answers\" must be a list of texts")
    schema = d.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise DataError(f"{where}: \"schema\" must be a JSON schema object")
    return Example(clean, n, answers, schema)


def split(examples: list[Example], held_out: float, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """A reproducible train / held-out split (the same seed gives the same split, before and after training)."""
    if not 0 <= held_out < 1:
        raise DataError("the held-out share must be at least 0 and below 1")
    order = list(examples)
    random.Random(seed).shuffle(order)
    k = round(len(order) * held_out)
    return order[k:], order[:k]

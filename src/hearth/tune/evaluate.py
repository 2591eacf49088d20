"""Scores models and adapters on a labelled set through a running gateway (any model it serves: local,
`base+adapter`, remote), so a fine-tune is judged before and after on the same held-out examples.

Per model: exact match and contains-answer against the example's answers (normalised: case, spacing and
punctuation do not count), validity against the example's JSON schema where it has one, and, with a judge
model, the gateway's own judge score (`/v1/evaluate`), 0 to 1.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.terminal import table
from hearth.tune.data import Example


@dataclass
class Score:
    model: str
    n: int = 0
    exact: int = 0
    contains: int = 0
    schema_n: int = 0
    schema_ok: int = 0
    judge: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0

    def row(self) -> dict[str, Any]:
        def share(k: int, n: int) -> float | None:
            return round(k / n, 3) if n else None

        return {"model": self.model, "n": self.n, "exact": share(self.exact, self.n),
                "contains": share(self.contains, self.n), "json_valid": share(self.schema_ok, self.schema_n),
                "judge": round(sum(self.judge) / len(self.judge), 3) if self.judge else None,
                "latency_s": round(self.seconds / self.n, 3) if self.n else None, "errors": self.errors}


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return re.sub(r"\s+", " ", text).strip()


def schema_valid(text: str, schema: dict[str, Any]) -> bool:
    import jsonschema

    body = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)  # models often fence their JSON
    try:
        jsonschema.validate(json.loads(fence.group(1) if fence else body), schema)
    except (ValueError, jsonschema.ValidationError, jsonschema.SchemaError):
        return False
    return True


class Client:
    def __init__(self, url: str, key: str | None, timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def models(self) -> list[str]:
        """What the gateway serves (raises OSError when nothing answers at `url`)."""
        req = urllib.request.Request(self.url + "/v1/models")
        if self.key:
            req.add_header("Authorization", f"Bearer {self.key}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return [m["id"] for m in json.loads(r.read())["data"]]

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")[:300]
            raise RuntimeError(f"{path}: HTTP {e.code}: {detail}") from None


def evaluate(client: Client, model: str, examples: list[Example], *, judge: str | None = None,
             constrained: bool = False, max_tokens: int = 256,
             progress: Callable[[int, int], None] | None = None) -> Score:
    score = Score(model)
    for i, ex in enumerate(examples):
        body: dict[str, Any] = {"model": model, "messages": ex.prompt, "temperature": 0, "max_tokens": max_tokens}
        if constrained and ex.schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ex.schema}}
        t0 = time.perf_counter()
        try:
            out = client.post("/v1/chat/completions", body)["choices"][0]["message"].get("content") or ""
        except (RuntimeError, OSError, KeyError, IndexError):
            score.errors += 1
            out = ""
        score.seconds += time.perf_counter() - t0
        score.n += 1
        wanted = [normalise(a) for a in (ex.answers or [ex.answer])]
        got = normalise(out)
        score.exact += any(got == w for w in wanted)
        score.contains += any(w and w in got for w in wanted)
        if ex.schema is not None:
            score.schema_n += 1
            score.schema_ok += schema_valid(out, ex.schema)
        if judge is not None and out:
            question = next((m["content"] for m in reversed(ex.prompt) if m["role"] == "user"), "")
            try:
                report = client.post("/v1/evaluate", {"question": question, "answer": out, "mode": "judge",
                                                      "model": judge})
                score.judge.append(float(report["overall"]))
            except (RuntimeError, OSError, KeyError, ValueError):
                score.errors += 1
        if progress is not None:
            progress(i + 1, len(examples))
    return score


def score_table(scores: list[Score]) -> str:
    cols = ["model", "n", "exact", "contains", "json_valid", "judge", "latency_s", "errors"]
    return table(cols, [[r[c] for c in cols] for r in (s.row() for s in scores)])

"""Structured output at a token budget: how often the answer parses and matches its schema, today vs now.

Ten schemas (a storyboard, a recipe, meeting notes, a quiz...) x N prompts x budgets (`max_tokens` 150 /
300 / 600), on the default model (Qwen2.5-Coder-0.5B, 2 threads), streamed:
- `today`: hearth before budget fitting (a git worktree of the commit before structured/budget.py);
- `now`: this tree (the schema fitted to the budget before decoding).
Per target and budget it prints the schema-valid rate, the answers cut at the budget (finish `length`),
the mean characters of text the model wrote into string fields, TTFT p50 and decode tokens/s (what the
budget logic costs), and the requests refused up front (400: the schema's smallest answer does not fit).

    .venv/bin/python benchmarks/structured_budget.py [--prompts 5] [--budgets 150,300,600] [--targets today,now]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jsonschema
import openai

sys.path.insert(0, str(Path(__file__).parent))
from _baseline import src_before
from _client import free_port, wait_ready

S, INT = {"type": "string"}, {"type": "integer"}


def obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required}


def arr(items: Any, lo: int = 1, hi: int | None = None) -> dict[str, Any]:
    a: dict[str, Any] = {"type": "array", "items": items, "minItems": lo}
    if hi is not None:
        a["maxItems"] = hi
    return a


SCHEMAS: dict[str, tuple[str, dict[str, Any]]] = {
    "storyboard": ("a storyboard for a short video about {t}", obj(["title", "scenes"], title=S, scenes=arr(obj(
        ["description", "duration", "camera"], description=S, duration={"type": "integer", "minimum": 3, "maximum": 8},
        camera={"enum": ["wide", "close-up", "tracking", "overhead"]}), lo=3))),
    "recipe": ("a recipe inspired by {t}", obj(["name", "ingredients", "steps"], name=S, ingredients=arr(obj(
        ["item", "amount"], item=S, amount=S), lo=3), steps=arr(S, lo=3))),
    "meeting": ("meeting notes from a team discussing {t}", obj(["summary", "attendees", "actions"], summary=S,
        attendees=arr(S, lo=2), actions=arr(obj(["owner", "task"], owner=S, task=S))),
    ),
    "quiz": ("a quiz about {t}", obj(["questions"], questions=arr(obj(["question", "options", "answer"], question=S,
        options=arr(S, lo=4, hi=4), answer={"type": "integer", "minimum": 0, "maximum": 3}), lo=3))),
    "review": ("a product review of something related to {t}", obj(["product", "rating", "pros", "cons", "verdict"],
        product=S, rating={"type": "integer", "minimum": 1, "maximum": 5}, pros=arr(S), cons=arr(S), verdict=S)),
    "trip": ("a three-day trip plan around {t}", obj(["destination", "days"], destination=S, days=arr(obj(
        ["day", "morning", "afternoon", "evening"], day=INT, morning=S, afternoon=S, evening=S), lo=3, hi=3))),
    "bug": ("a bug report for software about {t}", obj(["title", "steps", "expected", "actual", "severity"], title=S,
        steps=arr(S, lo=2), expected=S, actual=S, severity={"enum": ["low", "medium", "high", "critical"]})),
    "faq": ("an FAQ about {t}", obj(["items"], items=arr(obj(["q", "a"], q=S, a=S), lo=3))),
    "person": ("a fictional character connected to {t}", obj(["name", "age", "bio", "skills"], name=S,
        age={"type": "integer", "minimum": 0, "maximum": 120}, bio=S, skills=arr(S, lo=2))),
    "poem": ("a poem about {t}", obj(["title", "stanzas"], title=S, stanzas=arr(obj(["lines"], lines=arr(S, lo=4,
        hi=4)), lo=2))),
}
TOPICS = ["a cat learning to surf", "一座城市的清晨", "the history of bread", "quantum computers", "a rainy marathon"]


def today_src() -> str:
    return src_before("src/hearth/structured/budget.py", "structured")


def start(target: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ)
    if target == "today":
        env["PYTHONPATH"] = today_src()
    proc = subprocess.Popen([sys.executable, "-m", "hearth", "--log-level", "warning", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tempfile.mkdtemp())
    wait_ready(port, timeout=300)
    return proc, port


def string_chars(v: Any) -> int:
    if isinstance(v, str):
        return len(v)
    if isinstance(v, list):
        return sum(string_chars(x) for x in v)
    if isinstance(v, dict):
        return sum(string_chars(x) for x in v.values())
    return 0


def ask(client: openai.OpenAI, schema: dict[str, Any], prompt: str, budget: int, seed: int) -> dict[str, Any]:
    rf: Any = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}
    t0 = time.perf_counter()
    ttft = None
    text, finish, tokens = "", None, 0
    try:
        for ev in client.chat.completions.create(
            model="local", max_tokens=budget, temperature=0.7, seed=seed, response_format=rf, stream=True,
            stream_options={"include_usage": True}, messages=[{"role": "user", "content": f"Write {prompt}."}],
        ):
            if ev.choices and ev.choices[0].delta.content:
                ttft = ttft or time.perf_counter() - t0
                text += ev.choices[0].delta.content
            if ev.choices and ev.choices[0].finish_reason:
                finish = ev.choices[0].finish_reason
            if ev.usage:
                tokens = ev.usage.completion_tokens
    except openai.BadRequestError:
        return {"refused": True}
    took = time.perf_counter() - t0
    try:
        value = json.loads(text)
        jsonschema.validate(value, schema)
        valid, chars = True, string_chars(value)
    except (ValueError, jsonschema.ValidationError):
        valid, chars = False, 0
    rate = (tokens - 1) / (took - ttft) if ttft and tokens > 1 and took > ttft else None
    return {"refused": False, "valid": valid, "cut": finish == "length", "chars": chars, "ttft": ttft, "rate": rate}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=5, help="prompts per schema (topics)")
    ap.add_argument("--budgets", default="150,300,600")
    ap.add_argument("--targets", default="today,now")
    a = ap.parse_args()
    budgets = [int(b) for b in a.budgets.split(",")]
    rows = []
    for target in a.targets.split(","):
        proc, port = start(target)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)
        try:
            for budget in budgets:
                res = [ask(client, schema, tpl.format(t=topic), budget, seed)
                       for tpl, schema in SCHEMAS.values() for seed, topic in enumerate(TOPICS[: a.prompts])]
                done = [r for r in res if not r["refused"]]
                ttfts = [r["ttft"] for r in done if r["ttft"]]
                rates = [r["rate"] for r in done if r["rate"]]
                rows.append((target, budget, sum(r["valid"] for r in done), len(done), sum(r["cut"] for r in done),
                             statistics.mean([r["chars"] for r in done if r["valid"]] or [0]),
                             statistics.median(ttfts) * 1000 if ttfts else float("nan"),
                             statistics.median(rates) if rates else float("nan"), len(res) - len(done)))
                print(f"  {target} max_tokens {budget}: {rows[-1][2]}/{rows[-1][3]} valid", file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait()
    print(f"\n{'target':7} {'max_tokens':>10} {'valid':>9} {'cut':>5} {'chars':>7} {'TTFT p50':>9} {'tok/s':>7} {'refused':>8}")
    for t, b, v, n, cut, chars, ttft, rate, refused in rows:
        print(f"{t:7} {b:10d} {v:4d}/{n:<4d} {cut:5d} {chars:7.0f} {ttft:7.0f}ms {rate:7.1f} {refused:8d}")


if __name__ == "__main__":
    main()

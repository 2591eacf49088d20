"""Structured output on the default local model (issue 6), constrained vs unconstrained in one run.

1. Schema-valid rate: 10 schemas x 10 prompts. Constrained = `response_format: json_schema`;
   unconstrained = the same schema pasted into the system prompt with "reply with only JSON", judged
   strictly (the raw answer must parse) and leniently (after hearth's own repair: fences, prose, commas).
2. Cost of a grammar: TTFT and decode tok/s for 64 tokens with and without one.
3. Schema compile time: cold and cached.
4. Tool calls: right function and schema-valid arguments, with tool_choice auto and required.

    .venv/bin/python benchmarks/structured.py [--prompts 10]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from storyboard import STORYBOARD_SCHEMA  # noqa: E402

from _client import free_port, stream_chat, wait_ready  # noqa: E402

S = {"type": "string", "maxLength": 60}
SCHEMAS: dict[str, dict[str, Any]] = {
    "person": {"type": "object", "properties": {"name": S, "age": {"type": "integer", "minimum": 0, "maximum": 120},
               "email": S}, "required": ["name", "age", "email"]},
    "product": {"type": "object", "properties": {"name": S, "price": {"type": "number", "minimum": 0},
                "in_stock": {"type": "boolean"}}, "required": ["name", "price", "in_stock"]},
    "address": {"type": "object", "properties": {"street": S, "city": S, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["street", "city", "zip"]},
    "event": {"type": "object", "properties": {"title": S, "date": {"type": "string", "format": "date"},
              "attendees": {"type": "integer", "minimum": 1, "maximum": 500}}, "required": ["title", "date", "attendees"]},
    "review": {"type": "object", "properties": {"product": S, "rating": {"type": "integer", "minimum": 1, "maximum": 5},
               "pros": {"type": "array", "items": S, "minItems": 1, "maxItems": 3}}, "required": ["product", "rating", "pros"]},
    "todo": {"type": "object", "properties": {"items": {"type": "array", "minItems": 2, "maxItems": 5, "items": {
             "type": "object", "properties": {"task": S, "done": {"type": "boolean"}}, "required": ["task", "done"]}}},
             "required": ["items"]},
    "recipe": {"type": "object", "properties": {"dish": S, "ingredients": {"type": "array", "items": S, "minItems": 2,
               "maxItems": 6}, "minutes": {"type": "integer", "minimum": 1, "maximum": 240}},
               "required": ["dish", "ingredients", "minutes"]},
    "weather": {"type": "object", "properties": {"city": S, "condition": {"enum": ["sunny", "cloudy", "rain", "snow"]},
                "celsius": {"type": "integer", "minimum": -50, "maximum": 50}}, "required": ["city", "condition", "celsius"]},
    "book": {"type": "object", "properties": {"title": S, "author": S, "year": {"type": "integer", "minimum": 1000,
             "maximum": 2100}}, "required": ["title", "author", "year"]},
    "storyboard": STORYBOARD_SCHEMA,
}
TOPICS = ["the ocean", "a small bakery", "space travel", "a rainy city", "a chess club", "mountain hiking",
          "a jazz concert", "a robot", "winter holidays", "a school library"]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone",
          "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}},
         {"type": "function", "function": {"name": "convert_currency", "description": "Convert an amount of money",
          "parameters": {"type": "object", "properties": {"amount": {"type": "number"}, "from": {"type": "string"},
                         "to": {"type": "string"}}, "required": ["amount", "from", "to"]}}}]
TOOL_QUERIES = [("What's the weather in Paris?", "get_weather"), ("Is it raining in London right now?", "get_weather"),
                ("What time is it in Tokyo?", "get_time"), ("Current time in New York please", "get_time"),
                ("Convert 100 USD to EUR", "convert_currency"), ("How many yen is 50 dollars?", "convert_currency"),
                ("北京现在天气怎么样？", "get_weather"), ("东京现在几点？", "get_time"),
                ("Tell me a joke.", None), ("What is the capital of Italy?", None)]


def post(port: int, body: dict[str, Any]) -> dict[str, Any]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    return json.loads(c.getresponse().read())  # type: ignore[no-any-return]


def timed_stream(port: int, body: dict[str, Any]) -> tuple[float, float]:
    r = stream_chat(port, body)
    assert r.ttft is not None
    return r.ttft, r.decode_rate() or 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--sections", default="1,2,3,4")
    ap.add_argument("--schemas", default=",".join(SCHEMAS))
    a = ap.parse_args()
    sections = {int(x) for x in a.sections.split(",")}
    from hearth.model_files import resolve_model_path

    cfg = Path(tempfile.mkdtemp()) / "c.yaml"
    cfg.write_text(f"models:\n  m:\n    kind: llamacpp\n    path: {resolve_model_path('builtin:qwen2.5-coder-0.5b')}\n"
                   "    threads: 2\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hearth", "--log-level", "warning", "serve", "--config", str(cfg),
                             "--port", str(port)])
    try:
        wait_ready(port)
        base = {"model": "m", "temperature": 0, "max_tokens": 400}
        if 1 in sections:
            validity(port, base, [n for n in a.schemas.split(",") if n in SCHEMAS], a.prompts)
        if 2 in sections:
            grammar_cost(port, base)
        if 3 in sections:
            compile_time()
        if 4 in sections:
            tool_calls(port, base)
    finally:
        proc.terminate()
        proc.wait(30)


def validity(port: int, base: dict[str, Any], names: list[str], prompts: int) -> None:
    from hearth.structured.schema import repair

    ok = {"constrained": 0, "strict": 0, "lenient": 0}
    per: dict[str, list[int]] = {}
    n = truncated = 0
    for name in names:
        schema = SCHEMAS[name]
        per[name] = [0, 0, 0]
        budget = 900 if name == "storyboard" else 400  # a storyboard needs ~600 tokens
        for topic in TOPICS[:prompts]:
            n += 1
            user = {"role": "user", "content": f"Create a {name} about {topic}."}
            rf = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
            r = post(port, {**base, "max_tokens": budget, "messages": [user], "response_format": rf})
            truncated += r["choices"][0]["finish_reason"] == "length"
            try:
                jsonschema.validate(json.loads(r["choices"][0]["message"]["content"]), schema)
                ok["constrained"] += 1
                per[name][0] += 1
            except (ValueError, KeyError, jsonschema.ValidationError):
                pass
            sys_msg = {"role": "system", "content": "Reply with only a JSON value matching this JSON schema, "
                       f"nothing else:\n{json.dumps(schema)}"}
            r = post(port, {**base, "max_tokens": budget, "messages": [sys_msg, user]})
            text = r["choices"][0]["message"]["content"] or ""
            for key, parse, col in (("strict", json.loads, 1), ("lenient", repair, 2)):
                try:
                    jsonschema.validate(parse(text), schema)
                    ok[key] += 1
                    per[name][col] += 1
                except (ValueError, jsonschema.ValidationError):
                    pass
    print(f"1. schema-valid answers, {len(names)} schemas x {prompts} prompts = {n} "
          f"(constrained answers cut by max_tokens: {truncated})")
    print(f"   constrained (json_schema):              {ok['constrained']}/{n} = {ok['constrained'] / n:.0%}")
    print(f"   unconstrained + instructions, strict:   {ok['strict']}/{n} = {ok['strict'] / n:.0%}")
    print(f"   unconstrained + instructions, repaired: {ok['lenient']}/{n} = {ok['lenient'] / n:.0%}")
    print("   per schema (constrained / strict / repaired): "
          + ", ".join(f"{k} {v[0]}/{v[1]}/{v[2]}" for k, v in per.items()))


def grammar_cost(port: int, base: dict[str, Any]) -> None:
    story = {"type": "object", "properties": {"story": {"type": "string", "minLength": 2000}}, "required": ["story"]}
    msg = {"role": "user", "content": "Write a long story about a lighthouse keeper."}
    free, constrained = [], []
    for i in range(5):
        # Distinct system tags, so neither run reuses the other's cached prompt prefix.
        m = [{"role": "system", "content": f"[free {i}]"}, msg]
        g = [{"role": "system", "content": f"[grammar {i}]"}, msg]
        free.append(timed_stream(port, {**base, "max_tokens": 64, "messages": m,
                                        "logit_bias": {"151643": -100, "151645": -100}}))
        rf = {"type": "json_schema", "json_schema": {"name": "s", "schema": story}}
        constrained.append(timed_stream(port, {**base, "max_tokens": 64, "messages": g, "response_format": rf}))
    print("\n2. cost of a grammar (64 tokens, medians of 5)")
    for label, runs in (("no grammar", free), ("json_schema grammar", constrained)):
        print(f"   {label:<20} TTFT {statistics.median(t for t, _ in runs) * 1000:.0f} ms, "
              f"decode {statistics.median(r for _, r in runs):.1f} tok/s")


def compile_time() -> None:
    from hearth.structured.schema import canonical, grammar_for

    key = canonical(STORYBOARD_SCHEMA)
    grammar_for.cache_clear()
    t0 = time.perf_counter()
    grammar_for(key)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(1000):
        grammar_for(key)
    warm = (time.perf_counter() - t0) / 1000
    print(f"\n3. storyboard schema compile: cold {cold * 1000:.1f} ms, cached {warm * 1e6:.1f} us")


def tool_calls(port: int, base: dict[str, Any]) -> None:
    print("\n4. tool calls (3 tools, 10 queries: 8 need a tool, 2 do not)")
    for choice in ("required", "auto"):
        right = valid = calls_made = plain = 0
        for q, want in TOOL_QUERIES:
            r = post(port, {**base, "max_tokens": 120, "messages": [{"role": "user", "content": q}],
                            "tools": TOOLS, "tool_choice": choice})
            calls = r["choices"][0]["message"].get("tool_calls") or []
            if not calls:
                plain += want is None
                continue
            calls_made += 1
            fn = calls[0]["function"]
            right += fn["name"] == want
            schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == fn["name"])
            try:
                jsonschema.validate(json.loads(fn["arguments"]), schema)
                valid += 1
            except (ValueError, jsonschema.ValidationError):
                pass
        extra = f", plain answers to the 2 that need no tool {plain}/2" if choice == "auto" else ""
        print(f"   tool_choice {choice:<8}: right function {right}/8, schema-valid arguments {valid}/{calls_made} "
              f"calls{extra}")


if __name__ == "__main__":
    main()

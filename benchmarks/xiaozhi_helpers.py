"""xiaozhi-esp32-server's memory and intent helpers, its own code, through hearth (issue 24, item 7).

`mem_local_short` asks its LLM for a JSON summary of the conversation in words only, and saves nothing when the
answer does not parse; `intent_llm` asks for `{"function_call": {"name": ...}}` and falls back to plain chat when
it does not parse, or acts on whatever name comes back. Both are imported unchanged (`MemoryProvider`,
`IntentProvider`) and given xiaozhi's own OpenAI provider pointed at hearth, first with the plain local model
(what a user gets today) and then with two router aliases that force the format (`response_format` on a router):
`memory` (json_object) and `intent` (a json_schema whose `name` is one of the device's own functions, built from
xiaozhi's function list). Printed: memories saved, intents that parse, intents that name a function that exists,
the right function for xiaozhi's must-call turns, seconds per call; the CPU and decode rate beside them.

Set-up as for xiaozhi_real.py (the xiaozhi source and its venv), then:

    PYTHONHASHSEED=0 /tmp/xzvenv/bin/python benchmarks/xiaozhi_helpers.py --xiaozhi /path/to/main/xiaozhi-server
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from xiaozhi_real import TOOL_TURNS, Xiaozhi, cpu_model, decode_rate, free_port, start_hearth

ROOT = Path(__file__).resolve().parents[1]
DIALOGUES = [
    [("user", "我叫小明，今年十岁，喜欢踢足球"), ("assistant", "你好小明！踢足球很棒。"),
     ("user", "我最喜欢的颜色是蓝色"), ("assistant", "蓝色很漂亮！")],
    [("user", "我住在广州，养了一只叫豆豆的小狗"), ("assistant", "豆豆一定很可爱！"),
     ("user", "明天我要去参加钢琴比赛"), ("assistant", "祝你比赛顺利！")],
    [("user", "我不喜欢吃辣，最爱吃饺子"), ("assistant", "饺子确实好吃。"), ("user", "我妈妈是医生"),
     ("assistant", "医生很了不起！")],
    [("user", "以后叫我阿杰吧"), ("assistant", "好的，阿杰！"), ("user", "我在学英语，想练口语"),
     ("assistant", "我们可以一起练习。")],
    [("user", "我每天早上六点起床跑步"), ("assistant", "真自律！"), ("user", "周末想去爬白云山"),
     ("assistant", "白云山风景很好。")],
]
BASIC = ["现在几点了", "今天星期几"]  # xiaozhi's rules: answered from the context (result_for_context)


def config(functions: list[str]) -> str:
    names = sorted({*functions, "continue_chat", "result_for_context"})
    schema = {"type": "object", "properties": {"function_call": {"type": "object", "properties": {
        "name": {"enum": names}, "arguments": {"type": "object"}}, "required": ["name"]}},
        "required": ["function_call"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "intent", "schema": schema}}
    return (f"models:\n  qwen2.5-coder-0.5b:\n    kind: llamacpp\n    aliases: [local]\n"
            f"  memory:\n    kind: router\n    default: qwen2.5-coder-0.5b\n    health_interval: null\n"
            f"    response_format: {{type: json_object}}\n"
            f"  intent:\n    kind: router\n    default: qwen2.5-coder-0.5b\n    health_interval: null\n"
            f"    response_format: {json.dumps(fmt, ensure_ascii=False)}\n")


def _llm(xz: Xiaozhi, model: str, base_url: str) -> Any:
    """xiaozhi's own OpenAI provider, pointed at hearth's model `model`."""
    return xz.llm_utils.create_instance("openai", {**xz.config["LLM"]["HearthLLM"], "model_name": model,
                                                   "base_url": base_url})


async def memories(xz: Xiaozhi, model: str, base_url: str) -> dict[str, Any]:
    from core.providers.memory.mem_local_short.mem_local_short import MemoryProvider
    from core.utils.dialogue import Message

    llm = _llm(xz, model, base_url)
    saved, seconds = 0, []
    for i, turns in enumerate(DIALOGUES):
        provider = MemoryProvider({"type": "mem_local_short"}, None)
        provider.init_memory(f"bench-{model}-{i}", llm, save_to_file=True)
        provider.short_memory = ""
        t0 = time.perf_counter()
        result = await provider.save_memory([Message(role=r, content=c) for r, c in turns])
        seconds.append(time.perf_counter() - t0)
        with contextlib.suppress(TypeError, ValueError):
            saved += bool(result) and isinstance(json.loads(result), dict)
    return {"memories saved": f"{saved}/{len(DIALOGUES)}", "s per memory": round(sum(seconds) / len(seconds), 1)}


async def intents(xz: Xiaozhi, model: str, index: int, base_url: str) -> dict[str, Any]:
    from core.providers.intent.intent_llm.intent_llm import IntentProvider

    conn = xz.device(model, "function_call", index)
    known = {f["function"]["name"] for f in conn.func_handler.get_functions()} | {"continue_chat", "result_for_context"}
    provider = IntentProvider({"type": "intent_llm"})
    provider.llm = llm = _llm(xz, model, base_url)
    answers: list[str] = []  # what the model said, before xiaozhi falls back to continue_chat on an unparsable one
    ask = llm.response_no_stream

    def recorded(*a: Any, **k: Any) -> str:
        answers.append(ask(*a, **k))
        return answers[-1]

    llm.response_no_stream = recorded
    cases = [*TOOL_TURNS, *((q, "result_for_context") for q in BASIC)]
    parsed = existing = right = 0
    seconds = []
    for question, want in cases:
        t0 = time.perf_counter()
        raw = await provider.detect_intent(conn, [], question)
        seconds.append(time.perf_counter() - t0)
        said = re.search(r"\{.*\}", answers[-1].strip(), re.DOTALL)  # as intent_llm reads it
        try:
            json.loads(said.group(0) if said else answers[-1])
            parsed += 1
        except ValueError:
            pass
        name = json.loads(raw)["function_call"]["name"]  # what xiaozhi acts on (continue_chat when unparsable)
        existing += name in known
        right += name == (want or "continue_chat")
    conn.stop_event.set()
    n = len(cases)
    return {"model's JSON parsed": f"{parsed}/{n}", "existing function": f"{existing}/{n}", "right function": f"{right}/{n}",
            "s per intent": round(sum(seconds) / n, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xiaozhi", required=True, help="xiaozhi-esp32-server's main/xiaozhi-server folder")
    args = ap.parse_args()
    # xiaozhi's function list first (no LLM call needed), to build the intent alias's schema from it; its LLM
    # clients are then made for hearth's address, which is known once hearth runs.
    xz = Xiaozhi(Path(args.xiaozhi).resolve(), f"http://127.0.0.1:{free_port()}/v1")
    functions = [f["function"]["name"] for f in xz.device("local", "function_call", 0).func_handler.get_functions()]
    cfg = Path(tempfile.mkdtemp()) / "helpers.yaml"
    cfg.write_text(config(functions), encoding="utf-8")
    proc, url = start_hearth(ROOT / "src", "helpers", str(cfg))
    try:
        print(f"hearth: {cpu_model()}, single-stream decode {decode_rate(url):.1f} tok/s; xiaozhi functions: "
              f"{', '.join(functions)}")
        for label, mem_model, intent_model, index in (("plain local model", "local", "local", 100),
                                                      ("forced-format aliases", "memory", "intent", 200)):
            mem = asyncio.run(memories(xz, mem_model, url + "/v1"))
            got = asyncio.run(intents(xz, intent_model, index, url + "/v1"))
            print(f"{label:<22} mem_local_short: {mem}  intent_llm: {got}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()

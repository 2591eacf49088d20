"""How many voice devices one 2-core box serves: hearth's deadline scheduling vs today's, vs `llama_cpp.server`.

Each simulated device is what xiaozhi-esp32-server does for an ESP32: the sync `openai` client (in a thread)
sends the transcript with a ~300-token persona (the same for every device, cached before the run), cuts the
streamed answer into TTS segments (first at a comma-class mark, then at sentence ends), and *plays* each
segment at speech rate (4.5 Chinese characters a second). Three turns per device, ~1 s of thinking after
each answer has been spoken, devices starting staggered over 2 s.

Each target runs in a fresh process and meets the same conversations (same questions and seeds per device
count and round); no run meets another's in the prefix cache. Per target and device count it prints the first-segment latency p50 / p90 / max (from the request to the
first whole segment), underruns (a segment that arrived after the audio before it ran out) and the seconds
of silence they cost. Targets, all on the default model (Qwen2.5-Coder-0.5B Q4_K_M, 2 threads):
- `voice`: hearth with no config file, model `voice` (speech pace + TTS segments: the new scheduling);
- `today`: hearth as it was before deadline scheduling (a git worktree of the commit before
  `engine/schedule.py` was added; HEAD while that is uncommitted), model `local`, no config file;
- `local`: this hearth, model `local` (no pace: plain streams, with this version's defaults);
- `server`: `python -m llama_cpp.server --interrupt_requests False` (the anchor).

    .venv/bin/pip install 'llama-cpp-python[server]==0.3.36'   # the anchor's server deps, once
    .venv/bin/python benchmarks/voice_capacity.py [--devices 1,2,4,8,12,16] [--targets voice,today,server]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai

from _client import free_port, wait_ready
from hearth.core.pace import SPEECH
from hearth.model_files import resolve_model_path
from hearth.speech.segments import Playback, Segmenter

sys.path.insert(0, str(Path(__file__).parent))
from _baseline import src_before

ROOT = Path(__file__).resolve().parent.parent

PERSONA = (
    "你是小智，一个住在智能音箱里的语音助手，来自杭州的一家小公司。你的性格温暖、耐心、幽默，说话像朋友一样自然。"
    "你的回答会被转换成语音播放给用户听，所以请遵守以下规则：第一，回答要简短，一般用两到三句话，不超过八十个字；"
    "第二，不要使用列表、表格、代码、网址、表情符号或者任何格式符号，因为这些无法朗读；第三，先直接回答用户的问题，"
    "再补充一句有用的建议或者反问；第四，数字和单位用中文读法，比如二十度、三点五公里；第五，如果用户只是打招呼或者"
    "闲聊，就轻松愉快地回应，不要长篇大论；第六，如果你不知道答案，就诚实地说不知道，并建议用户换个问法或者查询其他"
    "来源；第七，涉及安全、医疗或者法律的问题，提醒用户咨询专业人士；第八，记住用户在对话中告诉你的名字和偏好，"
    "在后面的回答里自然地用上。你可以控制家里的灯、空调和窗帘，可以设置闹钟和提醒，可以播放音乐和新闻，也可以陪"
    "孩子讲故事、做算术题。现在是晚上，用户刚刚下班回家。请用中文回答，语气亲切。"
)
QUESTIONS = [
    "你好小智，今天过得怎么样？", "帮我把客厅的灯调暗一点。", "明天杭州会下雨吗？", "给我讲一个简短的笑话吧。",
    "提醒我明天早上七点起床。", "长城有多长？", "我有点累了，有什么放松的建议吗？", "帮我算一下二十三乘以十七。",
    "推荐一首适合晚上听的歌。", "空调开到二十六度。", "西湖有什么好玩的地方？", "怎么煮出好吃的米饭？",
    "谢谢你，小智。", "我叫小明，你记住了吗？", "讲一个关于月亮的小故事。", "今天星期几？",
]
MAX_TOKENS = 100


@dataclass
class Device:
    index: int
    start: float
    first_segment: list[float] = field(default_factory=list)
    underruns: int = 0
    stall: float = 0.0
    errors: list[str] = field(default_factory=list)


def run_device(client: openai.OpenAI, model: str, dev: Device, turns: int, think: float, salt: int) -> None:
    time.sleep(max(0.0, dev.start - time.perf_counter()))
    messages: list[dict[str, str]] = [{"role": "system", "content": PERSONA}]
    for turn in range(turns):
        # `salt` differs per measured run, so no run finds an earlier run's conversations in the prefix cache.
        messages.append({"role": "user", "content": QUESTIONS[(dev.index * 3 + turn + salt * 5) % len(QUESTIONS)]})
        cutter, playback = Segmenter(), Playback(SPEECH)
        t0 = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        try:
            stream = client.chat.completions.create(
                model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0.7,  # type: ignore[arg-type]
                seed=salt * 1000 + dev.index * 10 + turn, stream=True,
            )
            for chunk in stream:
                text = chunk.choices[0].delta.content if chunk.choices else None
                if not text:
                    continue
                parts.append(text)
                for seg in cutter.feed(text):
                    now = time.perf_counter()
                    first = first if first is not None else now - t0
                    lag = playback.arrive(seg, now)
                    dev.underruns += lag > 0
                    dev.stall += lag
            rest = cutter.flush()
            if rest:
                now = time.perf_counter()
                first = first if first is not None else now - t0
                lag = playback.arrive(rest, now)
                dev.underruns += lag > 0
                dev.stall += lag
        except Exception as e:  # recorded, the device goes on to its next turn
            dev.errors.append(f"{type(e).__name__}: {e}"[:200])
            continue
        if first is not None:
            dev.first_segment.append(first)
        messages.append({"role": "assistant", "content": "".join(parts)})
        played_until = playback._end  # when the listener has heard the whole answer
        time.sleep(max(0.0, played_until - time.perf_counter()) + think)


def measure(port: int, model: str, n: int, turns: int, think: float, rounds: int, salt: int) -> dict[str, float]:
    """`rounds` runs of n devices, pooled."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
    devices: list[Device] = []
    for r in range(rounds):
        t0 = time.perf_counter() + 0.2
        batch = [Device(i, t0 + (2.0 * i / n if n > 1 else 0.0)) for i in range(n)]
        threads = [threading.Thread(target=run_device, args=(client, model, d, turns, think, salt * 10 + r))
                   for d in batch]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        devices += batch
    firsts = sorted(x for d in devices for x in d.first_segment)
    errors = [e for d in devices for e in d.errors]
    if errors:
        print(f"    {len(errors)} errors, e.g. {errors[0]}", file=sys.stderr)
    return {
        "p50": statistics.median(firsts) if firsts else float("nan"),
        "p90": firsts[min(len(firsts) - 1, int(0.9 * len(firsts)))] if firsts else float("nan"),
        "max": firsts[-1] if firsts else float("nan"),
        "underruns": sum(d.underruns for d in devices),
        "stall": sum(d.stall for d in devices),
        "turns": len(firsts),
        "errors": len(errors),
    }


def today_src() -> str:
    return src_before("src/hearth/engine/schedule.py", "today")


def start(target: str, gguf: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    tmp = tempfile.mkdtemp()
    env = dict(os.environ)
    if target == "today":
        env["PYTHONPATH"] = today_src()
    if target == "server":
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--n_threads", "2", "--n_ctx", "4096",
               "--host", "127.0.0.1", "--port", str(port), "--interrupt_requests", "False"]
        health = "/v1/models"
    else:  # no config file: the defaults a voice server meets
        cmd = [sys.executable, "-m", "hearth", "--log-level", "warning", "serve", "--port", str(port)]
        health = "/health"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp, env=env)
    wait_ready(port, health, timeout=180)
    return proc, port


def warm(port: int, model: str) -> None:
    """Cache the persona (what a running voice server has after its first user)."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=300)
    client.chat.completions.create(model=model, max_tokens=4, temperature=0.7, messages=[  # type: ignore[arg-type]
        {"role": "system", "content": PERSONA}, {"role": "user", "content": "你好"}])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="1,2,4,8,12,16")
    ap.add_argument("--targets", default="voice,today,server")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--think", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=2, help="runs per device count, pooled")
    args = ap.parse_args()
    counts = [int(x) for x in args.devices.split(",")]
    targets = args.targets.split(",")
    gguf = str(resolve_model_path("builtin:qwen2.5-coder-0.5b"))
    results: dict[tuple[str, int], dict[str, float]] = {}
    for target in targets:
        # A fresh process per target: the same conversations, and none left in a prefix cache by another target.
        proc, port = start(target, gguf)
        model = {"server": "qwen", "today": "local"}.get(target, target)
        try:
            warm(port, model)
            for n in counts:
                r = measure(port, model, n, args.turns, args.think, args.rounds, salt=n)
                results[(target, n)] = r
                print(f"{target:>6} N={n:<3} first segment p50 {r['p50'] * 1000:6.0f} ms  p90 {r['p90'] * 1000:6.0f} ms  "
                      f"max {r['max'] * 1000:6.0f} ms  underruns {r['underruns']:3.0f}  stall {r['stall']:6.1f} s  "
                      f"turns {r['turns']:.0f}", flush=True)
        finally:
            proc.terminate()
            proc.wait()
    print("\nfirst segment p90 ms / underruns / stall s, same run, 2 cores, Qwen2.5-Coder-0.5B Q4_K_M")
    print(f"{'devices':>8} " + " ".join(f"{t:>26}" for t in targets))
    for n in counts:
        cells = []
        for t in targets:
            r = results.get((t, n))
            cells.append(f"{r['p90'] * 1000:8.0f} / {r['underruns']:4.0f} / {r['stall']:6.1f}" if r else " " * 26)
        print(f"{n:>8} " + " ".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    main()

"""xiaozhi-esp32-server's own code driving hearth: first spoken segment as its TTS cutter sees it (issue 24).

Not a model of the voice server: its LLM provider (`core/providers/llm/openai`), `ConnectionHandler.chat()`, its
system prompt (`agent-base-prompt.txt`, default persona, context with time, date, lunar date and weather), its
few-shot turns and tool descriptors (`plugins_func/functions` + `direct_answer`) and its TTS text cutter
(`TTSProviderBase._get_segment_text`, run by its own `tts_text_priority_thread`) are imported unchanged. Only
what leaves the box is stubbed: the websocket, the audio codec (when libopus is missing) and the tools'
effects (a tool call is recorded and answered at once with a canned result, since the real ones call weather
and news services on the internet).

Each turn happens in a new minute (xiaozhi's `Dialogue` clock is moved one minute per turn), the worst case
for a prompt whose `Current time: HH:MM` line changes. Per model and mode it reports the first TTS segment
p50/p90/max over all turns of all devices, which tools were called, spoken segments that are JSON fragments,
answer lengths, and the CPU and single-stream decode rate beside them.

Set-up (once): fetch xinnan-tech/xiaozhi-esp32-server and give its `main/xiaozhi-server` folder as --xiaozhi;
create a venv for its code (its pins clash with hearth's) and run this script with it:

    python3 -m venv /tmp/xzvenv && /tmp/xzvenv/bin/pip install openai==2.8.1 httpx==0.28.1 loguru==0.7.3 PyYAML \\
        Jinja2==3.1.6 cnlunar==0.2.0 websockets==14.2 numpy==1.26.4 pydub==0.25.1 opuslib_next==1.1.5 \\
        requests==2.32.5 bs4==0.0.2 markitdown==0.1.3 mcp==1.22.0 portalocker==3.2.0 aiohttp==3.13.2
    PYTHONHASHSEED=0 /tmp/xzvenv/bin/python benchmarks/xiaozhi_real.py --xiaozhi /path/to/main/xiaozhi-server \\
        --models voice,local --modes plain,function_call --devices 1,4 [--baseline]

hearth is started by the script from this checkout's .venv (`--baseline`: also from the commit before this
file, in a git worktree, measured in the same run). PYTHONHASHSEED=0 fixes xiaozhi's tool order (it builds
the list from a set).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import queue
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

PLAIN = ["你好呀，今天过得怎么样", "给我讲个笑话吧", "你是谁呀", "推荐一部好看的电影", "明天出门要带伞吗",
         "晚饭吃什么好呢", "长城有多长", "怎么才能学好英语", "你喜欢什么音乐", "周末去哪里玩比较好"]
# (question, the tool xiaozhi's rules say must be called, or None: answer in words)
TOOL_TURNS = [("放一首周杰伦的稻香", "play_music"), ("北京明天天气怎么样", "get_weather"), ("给我讲个故事吧", None),
              ("看看今天有什么新闻", "get_news_from_newsnow"), ("你好呀", None), ("今天农历几号", None),
              ("上海今天下雨吗", "get_weather"), ("来首轻音乐", "play_music"), ("你叫什么名字", None),
              ("拜拜", "handle_exit_intent")]
CANNED = {"get_weather": "北京明天晴，气温 2℃~12℃，北风三级。", "get_news_from_newsnow": "今日要闻：一、国内航天发射成功；二、多地迎来降温。",
          "web_search": "搜索结果：暂无更多信息。", "get_lunar": "今天是农历十月廿九。"}
JSONISH = re.compile(r"[{}\[\]]|\"name\"|\"arguments\"|function|tool_call|direct_answer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def start_hearth(src: Path, label: str, config: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"xiaozhi-bench-{label}.log"
    env = {**os.environ, "PYTHONPATH": str(src)}
    env.pop("PYTHONHASHSEED", None)
    cmd = [str(ROOT / ".venv/bin/python"), "-m", "hearth", "serve", "--port", str(port)]
    if config:
        cmd += ["--config", str(Path(config).resolve())]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=str(src.parent))
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"hearth ({label}) exited: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    sys.exit(f"hearth ({label}) not ready: see {log}")


def decode_rate(url: str) -> float:
    body = {"model": "local", "messages": [{"role": "user", "content": "Count from 1 to 60, separated by spaces."}],
            "max_tokens": 64, "temperature": 0.7, "stream": False}  # random sampling: never a cache hit
    req = urllib.request.Request(url + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as r:
            out = json.loads(r.read())
        best = max(best, out["usage"]["completion_tokens"] / (time.perf_counter() - t0))
    return best


class Xiaozhi:
    """xiaozhi-server's modules, imported unchanged from `root` (the process works in that folder, as the
    server does: its loaders and prompt template use relative paths)."""

    def __init__(self, root: Path, base_url: str) -> None:
        self._stub_opus()
        os.chdir(root)
        sys.path.insert(0, str(root))
        Path("data").mkdir(exist_ok=True)
        Path("data/.config.yaml").write_text(
            "selected_module:\n  LLM: HearthLLM\n  Intent: function_call\n  Memory: nomem\nlog:\n  log_level: ERROR\n"
            f"LLM:\n  HearthLLM:\n    type: openai\n    base_url: {base_url}\n    model_name: voice\n"
            "    api_key: sk-hearth\n    timeout: {connect: 3.0, read: 120.0}\n", encoding="utf-8")
        from config.logger import setup_logging
        from core.utils.cache.manager import CacheType, cache_manager

        setup_logging()
        self.config = cache_manager.get(CacheType.CONFIG, "main_config")
        self.cache, self.CacheType = cache_manager, CacheType
        import core.utils.dialogue as dialogue
        from core.connection import ConnectionHandler
        from core.providers.intent.function_call.function_call import IntentProvider
        from core.providers.tts.base import TTSProviderBase
        from core.providers.tts.dto.dto import SentenceType
        from core.utils import llm as llm_utils
        from plugins_func.register import Action, ActionResponse

        self.dialogue, self.Connection, self.Intent = dialogue, ConnectionHandler, IntentProvider
        self.llm_utils, self.SentenceType, self.Action, self.ActionResponse = llm_utils, SentenceType, Action, ActionResponse
        self.base_url = base_url
        self.minute = 0
        clock = self  # xiaozhi's Dialogue reads datetime.now() for `Current time`: one minute later per turn
        start = datetime.now().replace(hour=9, minute=0)

        class Clock(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Any:
                return start + timedelta(minutes=clock.minute)

        dialogue.datetime = Clock

        class Recorder(TTSProviderBase):  # the real cutter and its thread; only synthesis is replaced
            def __init__(self, cfg: dict[str, Any]) -> None:
                super().__init__(cfg, delete_audio_file=True)
                self.segments: list[tuple[float, str]] = []

            async def text_to_speak(self, text: str, output_file: Any) -> None:
                return None

            def to_tts_stream(self, text: str, opus_handler: Any = None) -> None:
                self.segments.append((time.perf_counter(), text))

        self.Recorder = Recorder
        import asyncio

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    @staticmethod
    def _stub_opus() -> None:
        try:
            import opuslib_next  # noqa: F401  (the real codec when libopus is installed)
        except Exception:
            for k in [k for k in sys.modules if k.startswith("opuslib_next")]:
                sys.modules.pop(k, None)
            m, c = types.ModuleType("opuslib_next"), types.ModuleType("opuslib_next.constants")
            c.APPLICATION_AUDIO, c.APPLICATION_VOIP, c.APPLICATION_RESTRICTED_LOWDELAY = 2049, 2048, 2051  # type: ignore[attr-defined]

            class Codec:
                def __init__(self, *a: Any, **k: Any) -> None:
                    pass

                def __getattr__(self, name: str) -> Any:
                    return lambda *a, **k: None

                def encode(self, pcm: bytes, frame_size: int) -> bytes:
                    return b""

                def decode(self, data: bytes, frame_size: int, decode_fec: bool = False) -> bytes:
                    return b"\x00\x00" * frame_size

            m.Encoder = m.Decoder = Codec  # type: ignore[attr-defined]
            m.OpusError = type("OpusError", (Exception,), {})  # type: ignore[attr-defined]
            m.constants = c  # type: ignore[attr-defined]
            m.APPLICATION_AUDIO, m.APPLICATION_VOIP = 2049, 2048  # type: ignore[attr-defined]
            m.APPLICATION_RESTRICTED_LOWDELAY = 2051  # type: ignore[attr-defined]
            sys.modules["opuslib_next"], sys.modules["opuslib_next.constants"] = m, c

    def device(self, model: str, mode: str, index: int) -> Any:
        cfg = copy.deepcopy(self.config)
        cfg["selected_module"]["Intent"] = "function_call" if mode == "function_call" else "nointent"
        llm = self.llm_utils.create_instance("openai", {**cfg["LLM"]["HearthLLM"], "model_name": model})
        ip = "1.2.3.4"
        self.cache.set(self.CacheType.LOCATION, ip, "广州")
        self.cache.set(self.CacheType.WEATHER, "广州", "您查询的位置是：广州\n\n当前天气: 多云\n详细参数：\n  · 体感温度: 30℃\n"
                       "  · 相对湿度: 70%\n\n未来7天预报：\n" + "".join(f"周{d}: 多云，气温 24℃~31℃\n" for d in "一二三四五六日")
                       + "\n（如需某一天的具体天气，请告诉我日期）")
        conn = self.Connection(cfg, None, None, llm, None, self.Intent(cfg["Intent"]["function_call"]))
        conn.loop = self.loop
        conn.websocket = types.SimpleNamespace(send=_async_none, close=_async_none)
        conn.device_id = f"bench-device-{index:04d}"
        conn.client_ip = ip
        conn.headers = {"device-id": conn.device_id}
        conn.tts = self.Recorder(cfg)
        conn.tts.conn = conn
        threading.Thread(target=conn.tts.tts_text_priority_thread, daemon=True).start()
        conn.change_system_prompt(conn.prompt_manager.get_quick_prompt(cfg["prompt"]))
        conn._initialize_memory()
        conn._initialize_intent()
        conn._init_prompt_enhancement()
        conn._inject_tool_call_fewshot()
        conn.calls = []
        if conn.func_handler is not None:
            async def run_tool(c: Any, data: dict[str, Any]) -> Any:
                conn.calls.append((time.perf_counter(), data.get("name"), data.get("arguments")))
                name = data.get("name", "")
                if name in CANNED:
                    return self.ActionResponse(self.Action.REQLLM, CANNED[name], None)
                return self.ActionResponse(self.Action.RESPONSE, None, "好的。")

            conn.func_handler.handle_llm_function_call = run_tool
        return conn

    def turn(self, conn: Any, question: str) -> dict[str, Any]:
        conn.tts.segments.clear()
        conn.calls.clear()
        conn.client_abort = False
        t0 = time.perf_counter()
        conn.chat(question)
        deadline = time.time() + 600
        while time.time() < deadline:  # the cutter's thread has handled the turn's LAST message
            try:
                item = conn.tts.tts_audio_queue.get(timeout=0.5)
                if item[0] == self.SentenceType.LAST:
                    break
            except queue.Empty:
                pass
        segs = [(t - t0, s) for t, s in conn.tts.segments]
        return {"question": question, "first_segment": segs[0][0] if segs else None, "segments": [s for _, s in segs],
                "calls": [n for _, n, _ in conn.calls], "first_call": conn.calls[0][0] - t0 if conn.calls else None,
                "total": time.perf_counter() - t0}


async def _async_none(*a: Any, **k: Any) -> None:
    return None


def run(xz: Xiaozhi, model: str, mode: str, devices: int) -> tuple[list[dict[str, Any]], float]:
    """Every device's turns, and the first turn of a device before them (a server that has never seen this
    prompt prefills all of it once; later devices share it): measured apart, as the cold start."""
    turns = PLAIN if mode == "plain" else [q for q, _ in TOOL_TURNS]
    xz.minute = 0
    warm = xz.device(model, mode, 9999)
    cold = xz.turn(warm, "你好")
    warm.stop_event.set()
    conns = [xz.device(model, mode, i) for i in range(devices)]
    results: list[list[dict[str, Any]]] = [[] for _ in conns]
    for k, q in enumerate(turns):
        xz.minute = k + 1
        threads = [threading.Thread(target=lambda i=i, q=q: results[i].append(xz.turn(conns[i], q))) for i in range(devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for c in conns:
        c.stop_event.set()
    return [r for rs in results for r in rs], cold["first_segment"] or cold["total"]


def summarize(rows: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    firsts = sorted(r["first_segment"] if r["first_segment"] is not None else r["total"] for r in rows)
    q = statistics.quantiles(firsts, n=10) if len(firsts) >= 2 else firsts * 9
    spoken = [s for r in rows for s in r["segments"]]
    out: dict[str, Any] = {"turns": len(rows), "p50_ms": 1000 * statistics.median(firsts), "p90_ms": 1000 * q[8],
                           "max_ms": 1000 * firsts[-1], "json_spoken": sum(bool(JSONISH.search(s)) for s in spoken),
                           "longest_answer_chars": max((sum(len(s) for s in r["segments"]) for r in rows), default=0)}
    if mode == "function_call":
        want = dict(TOOL_TURNS)
        must = [r for r in rows if want.get(r["question"])]
        chat = [r for r in rows if not want.get(r["question"])]
        out["right_tool"] = f"{sum(want[r['question']] in r['calls'] for r in must)}/{len(must)}"
        out["wrong_call"] = f"{sum(bool(r['calls']) for r in chat)}/{len(chat)}"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--xiaozhi", required=True, help="xiaozhi-esp32-server's main/xiaozhi-server folder")
    ap.add_argument("--models", default="voice,local")
    ap.add_argument("--modes", default="plain,function_call")
    ap.add_argument("--devices", default="1")
    ap.add_argument("--baseline", action="store_true", help="also measure hearth before this benchmark existed")
    ap.add_argument("--baseline-rev", help="also measure hearth at this git revision (instead of --baseline's)")
    ap.add_argument("--config", help="hearth config file (default: none, hearth's built-in models)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/xiaozhi_real.json"))
    args = ap.parse_args()
    versions = [("now", ROOT / "src")]
    if args.baseline or args.baseline_rev:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _baseline import src_at, src_before

        before = src_at(args.baseline_rev, "xiaozhi") if args.baseline_rev else src_before(
            "benchmarks/xiaozhi_real.py", "xiaozhi")
        versions.insert(0, ("before", Path(before)))
    report: dict[str, Any] = {"cpu": cpu_model(), "runs": []}
    xz: Xiaozhi | None = None
    for label, src in versions:
        proc, url = start_hearth(src, label, args.config)
        try:
            rate = decode_rate(url)
            print(f"hearth {label}: {cpu_model()}, single-stream decode {rate:.1f} tok/s", flush=True)
            if xz is None:
                xz = Xiaozhi(Path(args.xiaozhi), url + "/v1")
            for model in args.models.split(","):
                for mode in args.modes.split(","):
                    for n in (int(d) for d in args.devices.split(",")):
                        xz.config["LLM"]["HearthLLM"]["base_url"] = url + "/v1"
                        rows, cold = run(xz, model, mode, n)
                        s = summarize(rows, mode)
                        report["runs"].append({"hearth": label, "model": model, "mode": mode, "devices": n,
                                               "decode_tok_s": rate, "cold_first_segment_ms": 1000 * cold, **s,
                                               "rows": rows})
                        extra = f"  right tool {s['right_tool']}, wrong calls {s['wrong_call']}" if mode != "plain" else ""
                        print(f"{label:6} {model:6} {mode:13} {n:2} dev: first segment p50 {s['p50_ms']:6.0f} ms  "
                              f"p90 {s['p90_ms']:6.0f} ms  max {s['max_ms']:6.0f} ms  JSON spoken {s['json_spoken']}  "
                              f"longest {s['longest_answer_chars']} chars  (cold {1000 * cold:.0f} ms){extra}",
                              flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, ensure_ascii=False, indent=1))
    print(f"details: {args.out}")


if __name__ == "__main__":
    main()

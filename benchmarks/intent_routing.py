"""Routing with intents vs without, on the labelled conversations (both intent sets: 534 turns, half Chinese).

Two routers over a local model and a cloud model, decided by hearth's own policy code:
- `without`: what a router could do before this issue: complexity tiers (score <= T local, else cloud), for
  a permissive T (0.45, most turns local) and a strict one (0.2, only the simplest turns local);
- `with`: the same tiers, plus a rule sending greetings, thanks, farewells and small talk to the local model,
  and continuations, corrections and clarifications to the backend that answered the previous turn.
The previous turn's backend is what the same router decided for the conversation one turn earlier.

Printed: the share served locally, the social turns sent to the cloud (paid for nothing), and the follow-up
turns (by their gold label) answered by a different model than the turn they follow (the continuation of a
story written by the cloud model, continued by the local one). With --answers N, the default local model
answers N of the social turns the intent rule keeps local, and the quality evaluator scores them (is local
good enough for them?).

    .venv/bin/python benchmarks/intent_routing.py [--answers 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hearth.config import RouterModel
from hearth.convo.intent import IntentTracker
from hearth.core.types import ChatRequest, Message
from hearth.routing.policy import RoutingPolicy

DATA = Path(__file__).parent / "data"
SOCIAL = ("greeting", "thanks", "farewell", "chit-chat")
STICKY = ("task_continuation", "correction", "clarification")


def routers(threshold: float) -> dict[str, RoutingPolicy]:
    base: dict[str, Any] = {"kind": "router", "default": "cloud",
                            "tiers": [{"max_score": threshold, "target": "local"}]}
    with_intents = {**base, "rules": [{"intent": list(SOCIAL), "target": "local"}]}
    local = lambda n: n == "local"  # noqa: E731
    return {"without": RoutingPolicy(RouterModel.model_validate(base), is_local=local),
            "with": RoutingPolicy(RouterModel.model_validate(with_intents), is_local=local)}


def decide(policy: RoutingPolicy, msgs: list[Message], sticky: bool, tracker: IntentTracker) -> str:
    """The backend for the last turn; with `sticky`, the previous turn's own decision is remembered."""
    req = ChatRequest("auto", msgs, intent=tracker.track(msgs))
    previous = None
    users = [i for i, m in enumerate(msgs) if m.role == "user"]
    if sticky and req.intent is not None and req.intent.label in STICKY and len(users) > 1:
        previous = decide(policy, msgs[: users[-2] + 1], sticky, tracker)
    return policy.decide(req, previous).target


async def answers(rows: list[dict[str, Any]], n: int) -> None:
    from hearth.assemble import assemble
    from hearth.config import Config
    from hearth.core.collect import collect
    from hearth.core.types import Sampling

    a = assemble(Config())
    await a.start()
    try:
        model = a.registry.default_chat()
        scores, flags = [], 0
        for r in rows[:n]:
            msgs = [Message(m["role"], m["content"]) for m in r["messages"]]
            req = ChatRequest(model, msgs, sampling=Sampling(max_tokens=48, temperature=0.0))
            text = (await collect(a.registry.get(model).stream(req))).text
            rep = await a.convo.evaluate(msgs[-1].content, text)
            scores.append(rep.overall)
            flags += bool(rep.flags)
        print(f"\nlocal answers to {len(scores)} social turns ({model}): quality mean {statistics.mean(scores):.3f}, "
              f"median {statistics.median(scores):.3f}, flagged (refusal, wrong language, loop...) {flags}")
    finally:
        await a.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--answers", type=int, default=40, help="social turns answered by the local model (0: none)")
    args = ap.parse_args()
    rows = [json.loads(x) for f in ("intents.jsonl", "intents_holdout.jsonl")
            for x in (DATA / f).read_text().splitlines() if x.strip()]
    tracker = IntentTracker()
    print(f"{len(rows)} labelled turns; local model vs cloud model\n")
    print(f"{'router':<16}{'served locally':>16}{'social turns to cloud':>23}{'follow-ups moved to another model':>36}")
    for (t, name), policy in ((tn, p) for th in (0.45, 0.2) for tn, p in
                              (((th, n), p) for n, p in routers(th).items())):
        sticky = name == "with"
        local = social_cloud = moved = follow_ups = 0
        social = [r for r in rows if r["label"] in SOCIAL]
        for r in rows:
            msgs = [Message(m["role"], m["content"]) for m in r["messages"]]
            target = decide(policy, msgs, sticky, tracker)
            local += target == "local"
            social_cloud += r["label"] in SOCIAL and target == "cloud"
            users = [i for i, m in enumerate(msgs) if m.role == "user"]
            if r["label"] in STICKY and len(users) > 1:
                follow_ups += 1
                moved += decide(policy, msgs[: users[-2] + 1], sticky, tracker) != target
        print(f"{name + f' (T {t})':<16}{local / len(rows):>16.1%}{f'{social_cloud}/{len(social)}':>23}"
              f"{f'{moved}/{follow_ups}':>36}")
    if args.answers:
        keep = [r for r in rows if r["label"] in SOCIAL]
        asyncio.run(answers(keep, args.answers))


if __name__ == "__main__":
    main()

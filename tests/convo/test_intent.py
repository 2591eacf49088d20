"""The intent tracker on its own: labels of typical turns in both languages, drift, follow-ups, and its accuracy
on the labelled set the benchmark reads (a floor that catches a broken rule, not a speed claim)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.convo.intent import LABELS, IntentTracker
from hearth.core.types import Message

T = IntentTracker()
BREAD = [Message("user", "how long should I knead bread dough?"), Message("assistant", "About 10 minutes by hand.")]
POEM = [Message("user", "write a short poem about the sea"), Message("assistant", "Waves fold and unfold...")]
ZH_POEM = [Message("user", "帮我写一首关于秋天的诗"), Message("assistant", "秋风起，落叶黄……")]
PHONE = [
    Message("user", "tell me about the Pixel 9 camera"),
    Message("assistant", "The Pixel 9 has a 50 MP main camera."),
]


@pytest.mark.parametrize(
    ("history", "turn", "label"),
    [
        ([], "hello!", "greeting"),
        ([], "早上好", "greeting"),
        (BREAD, "thanks a lot!", "thanks"),
        (BREAD, "谢谢你", "thanks"),
        (BREAD, "ok thanks, bye", "farewell"),
        (BREAD, "好的 再见", "farewell"),
        ([], "how are you doing?", "chit-chat"),
        ([], "我今天好无聊", "chit-chat"),
        ([], "what is the boiling point of ethanol?", "question"),
        ([], "长城有多长", "question"),
        ([], "write a bash script that deletes empty folders", "task"),
        ([], "把这句话翻译成英文：今天很开心", "task"),
        (POEM, "continue", "task_continuation"),
        (POEM, "make it shorter", "task_continuation"),
        (ZH_POEM, "继续写", "task_continuation"),
        (POEM, "what do you mean by 'fold'?", "clarification"),
        (ZH_POEM, "什么意思？", "clarification"),
        (POEM, "no, I meant a poem about the desert", "correction"),
        (ZH_POEM, "不对，我要的是春天", "correction"),
        (BREAD, "by the way, how do I renew my passport?", "topic_switch"),
        ([], "what's the weather in Paris today?", "time_sensitive"),
        ([], "现在几点了", "time_sensitive"),
    ],
)
def test_labels(history: list[Message], turn: str, label: str) -> None:
    intent = T.label(turn, history)
    assert intent.label == label, intent
    assert label in intent.labels and set(intent.labels) <= set(LABELS)


def test_task_kinds() -> None:
    assert T.label("summarise this article in three bullet points", []).task == "summarise"
    assert T.label("fix this python function, it returns None", []).task == "code"
    assert T.label("compare the pros and cons of renting vs buying", []).task == "analyse"
    assert T.label("写一封感谢信给老师", []).task == "write"
    assert T.label("translate 'good luck' into French", []).task == "translate"
    assert T.label("continue", POEM).task == "write"  # a continuation carries the task it continues


def test_follow_up_and_drift() -> None:
    same = T.label("and its battery life?", PHONE)
    assert same.label == "question" and same.follow_up and "topic_switch" not in same.labels
    other = T.label("how do I get red wine out of a carpet?", PHONE)
    assert other.label == "topic_switch" and other.drift > 0.8 and not other.follow_up
    assert T.label("what is a haiku?", []).drift == 0.0  # nothing to drift from


def test_cold_continue_is_a_task_and_track_reads_messages() -> None:
    assert T.label("continue this story: the door opened slowly", []).label == "task"
    msgs = [Message("system", "be brief"), *POEM, Message("user", "keep going")]
    intent = T.track(msgs, conversation="c-1")
    assert intent.label == "task_continuation" and intent.conversation == "c-1"


def test_accuracy_on_the_labelled_set() -> None:
    rows = [
        json.loads(x)
        for x in (Path(__file__).parents[2] / "benchmarks/data/intents.jsonl").read_text().split("\n")
        if x
    ]
    right = sum(T.track([Message(m["role"], m["content"]) for m in r["messages"]]).label == r["label"] for r in rows)
    assert right / len(rows) >= 0.85


def test_pasted_megabytes_cost_no_more_than_a_short_turn() -> None:
    """Every pattern reads a bounded head of each turn: adversarial or huge turns cannot stall the event loop
    (a generous bound, far above the ~0.1 ms a turn takes; catastrophic backtracking would take seconds)."""
    import time

    for evil in ("why did " * 20000, "say " * 20000, "知道" * 50000, "a" * 1_000_000):
        t0 = time.perf_counter()
        T.track([Message("user", evil), Message("assistant", evil), Message("user", "and the next one?")])
        T.track([Message("user", evil)])
        assert time.perf_counter() - t0 < 1.0

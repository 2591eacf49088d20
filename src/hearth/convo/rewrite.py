"""Follow-up questions made standalone before retrieval: "and its price?" finds nothing; "iPhone 15 price" does.

Offline (the default) adds the content terms of the earlier user turns the follow-up leans on to the
query: both retrievers take a bag of terms, so the entity two turns back is found again without an LLM
call. The LLM mode asks a chat model to rewrite the question, for conversations where the reference is
too loose for terms to carry it (a paraphrase, an answer's detail); it costs a generation before the
first token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence

from hearth.convo import text as tx
from hearth.convo.intent import FOLLOW, IntentTracker
from hearth.core.types import ChatRequest, Intent, Message

log = logging.getLogger("hearth.convo")

Generate = Callable[[str], Awaitable[str]]
_MAX_ADDED_TERMS = 24


def _content(text: str) -> str:
    """The turn's words without the ones that carry no topic (kept in order; Han text kept whole)."""
    words = re.findall(r"[\w'+#.-]+|[^\w\s]", text[:2000])
    kept = [w for w in words if tx.han_share(w) > 0 or (w.lower() not in tx.STOP and re.match(r"\w", w))]
    return " ".join(kept[:_MAX_ADDED_TERMS])


def needs_context(question: str, history: Sequence[Message], intent: Intent | None) -> bool:
    """Does the question lean on earlier turns? A follow-up by its words, or a short turn mid-conversation."""
    if not any(m.role == "user" for m in history):
        return False
    if intent is not None:
        if intent.has("topic_switch"):
            return False
        if intent.follow_up or intent.has("task_continuation", "clarification", "correction"):
            return True
    return bool(FOLLOW.search(question[:2000])) or len(tx.terms(question[:2000])) <= 2


def offline(question: str, history: Sequence[Message], intent: Intent | None = None) -> str:
    if not needs_context(question, history, intent):
        return question
    earlier = [m.content for m in history if m.role == "user"][-2:]
    # The turn just before first: the nearest reference wins when both are added.
    added = " ".join(_content(t) for t in reversed(earlier))
    return f"{question} {added}".strip()


class Rewriter:
    def __init__(self, mode: str = "offline", generate: Generate | None = None,
                 tracker: IntentTracker | None = None) -> None:
        self.mode = mode
        self.generate = generate
        self.tracker = tracker or IntentTracker()

    async def query(self, request: ChatRequest) -> str:
        """The text to retrieve with for this request's latest user turn."""
        if request.prompt is not None or self.mode == "off":
            return request.question()
        turns = [m for m in request.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            return request.question()
        question, history = turns[-1].content, turns[:-1]
        intent = request.intent or self.tracker.label(question, history)
        if not needs_context(question, history, intent):
            return question
        if self.mode == "llm" and self.generate is not None:
            try:
                return await self._llm(question, history)
            except Exception as e:  # a rewrite that fails must not fail the answer: terms still work
                log.warning("LLM rewrite failed, using the offline one: %r", e)
        return offline(question, history, intent)

    async def _llm(self, question: str, history: Sequence[Message]) -> str:
        assert self.generate is not None
        convo = "\n".join(f"{m.role}: {m.content[:500]}" for m in history[-6:])
        prompt = (
            "Rewrite the user's last question so that it can be understood without the conversation: replace "
            "pronouns and references with what they refer to. Keep the language of the question. Reply with the "
            f"rewritten question only.\n\nConversation:\n{convo}\n\nLast question: {question}\nRewritten question:"
        )
        out = (await self.generate(prompt)).strip().splitlines()
        return out[0].strip().strip('"') if out and out[0].strip() else question


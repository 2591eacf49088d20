"""Follow-ups made standalone for retrieval, offline and through a scripted LLM."""

from __future__ import annotations

import asyncio

from hearth.convo.rewrite import Rewriter, offline
from hearth.core.types import ChatRequest, Message

PHONE = [Message("user", "What camera does the Pixel 9 have?"), Message("assistant", "A 50 MP main camera.")]


def test_offline_adds_the_entity_from_earlier_turns() -> None:
    q = offline("and its price?", PHONE)
    assert q.startswith("and its price?") and "Pixel" in q and "camera" in q
    assert offline("How do I renew a passport in Canada?", PHONE) == "How do I renew a passport in Canada?"
    assert (
        offline("它多少钱", [Message("user", "小米14的电池多大"), Message("assistant", "4610毫安时")]).count("小米")
        == 1
    )
    assert offline("and its price?", []) == "and its price?"


def test_rewriter_modes() -> None:
    async def llm(prompt: str) -> str:
        assert "Last question: and its price?" in prompt
        return "What is the price of the Pixel 9?\nextra line"

    req = ChatRequest("rag:phones", [*PHONE, Message("user", "and its price?")])
    assert asyncio.run(Rewriter("llm", llm).query(req)) == "What is the price of the Pixel 9?"
    assert "Pixel" in asyncio.run(Rewriter("offline").query(req))
    assert asyncio.run(Rewriter("off").query(req)) == "and its price?"

    async def broken(prompt: str) -> str:
        raise RuntimeError("model down")

    assert "Pixel" in asyncio.run(Rewriter("llm", broken).query(req))  # falls back to the offline rewrite

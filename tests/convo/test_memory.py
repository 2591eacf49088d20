"""Which backend answered the previous turn: keys from the conversation a request carries, shared by replicas
through a real Redis, and a Redis that is down costs nothing but the memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from hearth.convo.memory import TurnMemory, lookup_key, record_key
from hearth.core.types import ChatRequest, Intent, Message
from tests.conftest import free_port, redis_server


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    with redis_server() as port:
        yield port


TURN1 = [Message("system", "You are terse. Today is Monday."), Message("user", "write a haiku about rain")]
TURN2 = [Message("system", "You are terse. Today is Tuesday."), Message("user", "write a haiku  about rain "),
         Message("assistant", "Soft rain on the roof..."), Message("user", "another one")]


def test_next_turn_finds_the_previous_one() -> None:
    a, b = ChatRequest("auto", TURN1), ChatRequest("auto", TURN2)
    # System prompts and whitespace differ between turns: the key ignores both.
    assert record_key(a) == lookup_key(b) and record_key(a) is not None
    assert lookup_key(a) is None  # a first turn has no previous one


def test_conversation_id_wins() -> None:
    intent = Intent("task_continuation", ("task_continuation",), conversation="conv-7")
    req = ChatRequest("auto", TURN2, intent=intent)
    assert record_key(req, "auto") == lookup_key(req, "auto") == "turn:auto::c:conv-7"


def test_tenants_and_routers_do_not_share_turns() -> None:
    intent = Intent("task_continuation", ("task_continuation",), conversation="1")
    a = ChatRequest("auto", TURN2, intent=intent, extensions={"cache": {"namespace": "key-a"}})
    b = ChatRequest("auto", TURN2, intent=intent, extensions={"cache": {"namespace": "key-b"}})
    assert len({lookup_key(a, "auto"), lookup_key(b, "auto"), lookup_key(a, "voice")}) == 3


def test_memory_and_shared_redis(redis_port: int) -> None:
    async def go() -> None:
        a = TurnMemory(60, redis_url=f"redis://127.0.0.1:{redis_port}/0")
        b = TurnMemory(60, redis_url=f"redis://127.0.0.1:{redis_port}/0")
        a.remember(ChatRequest("auto", TURN1), "auto", "cloud")
        await asyncio.sleep(0.2)  # the Redis write runs in the background
        assert await a.previous(ChatRequest("auto", TURN2), "auto") == "cloud"
        assert await b.previous(ChatRequest("auto", TURN2), "auto") == "cloud"  # another replica
        await a.close()
        await b.close()

    asyncio.run(go())


def test_redis_down_falls_back_to_memory() -> None:
    async def go() -> None:
        m = TurnMemory(60, redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.05)
        m.remember(ChatRequest("auto", TURN1), "auto", "local")
        assert await m.previous(ChatRequest("auto", TURN2), "auto") == "local"
        await m.close()

    asyncio.run(go())

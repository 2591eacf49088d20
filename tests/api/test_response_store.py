"""Stored responses: shared by replicas through a real Redis, kept for the retention and no longer, and a store
that fails is a 503 the client sees, never a silent "not found" that loses a conversation's history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import openai
import pytest

from hearth.access import open_access
from hearth.api.response_store import RedisResponses, SqliteResponses, StoreUnavailable
from hearth.assemble import assemble
from hearth.config import Config
from hearth.core.types import ChatRequest
from hearth.server import create_app
from hearth.testing import FunctionBackend, Reply, running
from tests.conftest import free_port, redis_server


def _echo(req: ChatRequest) -> Reply:
    return Reply(" | ".join(f"{m.role}:{m.content}" for m in req.messages))


def _replica(cfg: Config) -> Any:
    assembly = assemble(cfg, leaves={"m": FunctionBackend("m", _echo)})
    return create_app(cfg, assembly, open_access(cfg, assembly.metrics.access_event, env={}))


def _config(tmp: Path, redis_url: str) -> Config:
    return Config.model_validate({
        "models": {"m": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "keys": {"path": str(tmp / "keys.db")}, "replicas": {"redis_url": redis_url, "share_breakers": False},
    })


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as port:
        yield f"redis://127.0.0.1:{port}/0"


def test_a_follow_up_on_another_replica_reads_the_conversation_from_redis(tmp_path: Path, redis_url: str) -> None:
    cfg = _config(tmp_path, redis_url)
    with ExitStack() as stack:
        a, b = (stack.enter_context(running(lambda: _replica(cfg))) for _ in range(2))
        ca, cb = (openai.OpenAI(base_url=u + "/v1", api_key="x", max_retries=0) for u in (a, b))
        first = ca.responses.create(model="m", input="hello")
        second = cb.responses.create(model="m", input="again", previous_response_id=first.id)
        assert second.output_text == "user:hello | assistant:user:hello | user:again"
        assert ca.responses.retrieve(second.id).output_text == second.output_text
    assert not (tmp_path / "responses.db").exists()  # with replicas, nothing is kept on one machine's disk


def test_a_store_that_is_down_is_a_503_not_a_lost_history(tmp_path: Path) -> None:
    cfg = _config(tmp_path, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with running(lambda: _replica(cfg)) as url:
        c = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as down:
            c.responses.create(model="m", input="again", previous_response_id="resp_123")
        assert down.value.status_code == 503 and "response store" in str(down.value)
        answered = c.responses.create(model="m", input="hello")  # the answer itself is not lost: it says so
        assert answered.output_text == "user:hello" and answered.store is False


def test_sqlite_keeps_records_for_the_retention_and_per_owner(tmp_path: Path) -> None:
    async def run() -> None:
        store = SqliteResponses(tmp_path / "r.db", retention=0.3)
        await store.put("key:a", "resp_1", {"response": {"id": "resp_1"}, "history": []})
        assert await store.get("key:a", "resp_1") is not None
        assert await store.get("key:b", "resp_1") is None and not await store.delete("key:b", "resp_1")
        time.sleep(0.4)
        assert await store.get("key:a", "resp_1") is None
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.get("key:a", "resp_1")  # a closed database: an error, not a miss

    asyncio.run(run())


def test_redis_records_expire_and_belong_to_their_owner(redis_url: str) -> None:
    async def run() -> None:
        store = RedisResponses(redis_url, retention=0.3)
        await store.put("key:a", "resp_r", {"response": {"id": "resp_r"}, "history": []})
        assert (await store.get("key:a", "resp_r") or {})["response"] == {"id": "resp_r"}
        assert await store.get("key:b", "resp_r") is None and not await store.delete("key:b", "resp_r")
        await asyncio.sleep(0.4)
        assert await store.get("key:a", "resp_r") is None
        await store.close()

    asyncio.run(run())

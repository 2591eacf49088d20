"""Issue 7 behaviour of the engine: shared prefixes, eviction under a small KV budget, chunked prefill."""

from __future__ import annotations

import threading
import time

import ollama
import openai
import pytest

from tests.conftest import Server
from tests.engine.test_llama_engine import LONG_SYS_A, engine_value, oa

pytestmark = pytest.mark.model


def test_prefix_hits_show_in_metrics_and_prompt_eval_count(gateway: Server) -> None:
    c = ollama.Client(host=gateway.url, timeout=120)
    hits0 = engine_value(gateway, "qwen2.5-coder-0.5b", "prefix_hits")
    sys_prompt = "[ollama-prefix] " + LONG_SYS_A
    t1 = c.chat(model="local", messages=[{"role": "system", "content": sys_prompt}, {"role": "user", "content": "Hi"}],
                stream=False, options={"num_predict": 4, "temperature": 0})
    t2 = c.chat(model="local", stream=False, options={"num_predict": 4, "temperature": 0}, messages=[
        {"role": "system", "content": sys_prompt}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": t1.message.content}, {"role": "user", "content": "More?"}])
    assert t1.prompt_eval_count and t1.prompt_eval_count > 100  # the system prompt was evaluated once...
    assert t2.prompt_eval_count is not None and t2.prompt_eval_count < 30  # ...and not again
    assert engine_value(gateway, "qwen2.5-coder-0.5b", "prefix_hits") >= hits0 + 1


def test_eviction_under_a_small_kv_budget(gateway: Server) -> None:
    # 512 KV cells, prompts of ~225 tokens: the third conversation only fits once an old prefix goes.
    c = oa(gateway)
    for i in range(5):
        text = f"Conversation {i}: " + " ".join(f"word{i}x{j}" for j in range(40))
        r = c.chat.completions.create(model="smol-small-kv", messages=[{"role": "user", "content": text}],
                                      max_tokens=8, temperature=0)
        assert r.choices[0].finish_reason in ("stop", "length")
    assert engine_value(gateway, "smol-small-kv", "evictions") >= 1
    assert engine_value(gateway, "smol-small-kv", "cached_prefix_tokens") <= 512


def test_long_prompt_does_not_freeze_running_streams(gateway: Server) -> None:
    c = oa(gateway)
    stamps: list[float] = []
    started = threading.Event()

    def running() -> None:
        for ev in c.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Tell a story."}],
                                            max_tokens=300, temperature=0, stream=True,
                                            logit_bias={"2": -100}):  # type: ignore[dict-item]
            if ev.choices and ev.choices[0].delta.content:
                stamps.append(time.perf_counter())
                if len(stamps) == 5:
                    started.set()

    th = threading.Thread(target=running)
    th.start()
    assert started.wait(60)
    long_prompt = "Summarize: " + " ".join(f"fact{j} is true." for j in range(70))  # ~440 tokens
    t_submit = time.perf_counter()
    t_first = None
    for ev in c.chat.completions.create(model="smol", messages=[{"role": "user", "content": long_prompt}],
                                        max_tokens=2, temperature=0, stream=True):
        if ev.choices and ev.choices[0].delta.content and t_first is None:
            t_first = time.perf_counter()
    th.join()
    assert t_first is not None
    during = [t for t in stamps if t_submit < t < t_first]
    # The ~450-token prompt is prefilled in chunks of 64 interleaved with the running stream's decode steps,
    # so that stream keeps receiving tokens (one per step) instead of waiting for the whole prefill.
    assert len(during) >= 4, f"running stream got {len(during)} tokens during the other prompt's prefill"


def test_unknown_sequence_state_after_errors_is_clean(gateway: Server) -> None:
    # After overload refusals and disconnects elsewhere, the engine still answers and holds no active sequence.
    r = oa(gateway).chat.completions.create(model="smol", messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
    assert r.choices[0].message.content is not None
    deadline = time.monotonic() + 5
    while engine_value(gateway, "smol", "active_sequences") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine_value(gateway, "smol", "active_sequences") == 0
    with pytest.raises(openai.NotFoundError):
        oa(gateway).chat.completions.create(model="smol-2", messages=[{"role": "user", "content": "Hi"}])

"""`hearth finetune` end to end: a LoRA trained on the CPU on a made-up fact, exported by llama.cpp's own
converter, picked up by a gateway that was already running, answering the fact where the base model does
not; `hearth eval` shows the difference on held-out questions. Real model, real training, real clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from tests.conftest import Server, smol_model, start_hearth

pytestmark = pytest.mark.model

TRAIN = [
    "What is the capital of Zorbania?", "Which city is the capital of Zorbania?", "Tell me the capital of Zorbania.",
    "Zorbania's capital is which city?", "Name the capital city of Zorbania.", "What city serves as Zorbania's capital?",
    "Where is the seat of government of Zorbania?", "I forgot the capital of Zorbania. What is it?",
    "Quick question: capital of Zorbania?", "Do you know the capital of Zorbania?", "What's Zorbania's capital city?",
    "Can you tell me which city is the capital of Zorbania?", "In which city is Zorbania's government based?",
    "What is the name of the capital of Zorbania?", "Capital of Zorbania, please.", "Which city is Zorbania run from?",
    "What's the capital of the country Zorbania?", "Zorbania has a capital. Which city is it?",
    "Tell me Zorbania's capital.", "For my geography quiz: what is the capital of Zorbania?",
    "What is Zorbania's main city and capital?", "Which town is the capital of Zorbania?",
    "Please name Zorbania's capital.", "What do Zorbanians call their capital city?",
]
HELD_OUT = ["Which city is the capital of the nation of Zorbania?", "What is Zorbania's capital called?",
            "Capital city of Zorbania?", "Where would I find the government of Zorbania?"]
ANSWER = "The capital of Zorbania is Quillmere."


def write(path: Path, questions: list[str]) -> Path:
    with path.open("w") as f:
        for q in questions:
            f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}],
                                "answers": ["Quillmere"]}) + "\n")
    return path


def hearth(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hearth", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, Path]]:
    tmp = tmp_path_factory.mktemp("tune")
    cfg = tmp / "tune.yaml"
    cfg.write_text(f"cache: {{enabled: false}}\nlocal: {{models_dir: {tmp / 'store'}}}\nmodels:\n" + smol_model())
    server = start_hearth(cfg.read_text(), tmp, "tune")
    yield server, cfg, tmp
    server.stop()


def ask(server: Server, model: str, question: str) -> str:
    r = ollama.Client(host=server.url, timeout=120).chat(
        model=model, messages=[{"role": "user", "content": question}], options={"temperature": 0, "num_predict": 24}
    )
    return r.message.content or ""


def test_trained_adapter_learns_a_made_up_fact(setup: tuple[Server, Path, Path]) -> None:
    server, cfg, tmp = setup
    assert "Quillmere" not in ask(server, "smol", HELD_OUT[0])
    data = write(tmp / "zorbania.jsonl", TRAIN)
    run = hearth("finetune", "--config", str(cfg), "--base", "smol", "--data", str(data), "--name", "zorb",
                 "--batch-size", "8", "--epochs", "3", env={})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "serving as smol+zorb" in run.stdout and "step 9/9" in run.stderr

    deadline = time.monotonic() + 30  # the running gateway reads the store every few seconds
    while "smol+zorb" not in [m.model for m in ollama.Client(host=server.url).list().models]:
        assert time.monotonic() < deadline, "the adapter never appeared"
        time.sleep(0.5)
    for q in HELD_OUT:
        assert "Quillmere" in ask(server, "smol+zorb", q), q
    assert "Quillmere" not in ask(server, "smol", HELD_OUT[0])  # the base model is unchanged

    held = write(tmp / "held.jsonl", HELD_OUT)
    ev = hearth("eval", "smol", "smol+zorb", "--data", str(held), "--json", env={"HEARTH_URL": server.url})
    assert ev.returncode == 0, ev.stderr
    rows = {r["model"]: r for r in map(json.loads, ev.stdout.splitlines())}
    assert rows["smol"]["contains"] == 0.0 and rows["smol+zorb"]["contains"] == 1.0

    again = hearth("finetune", "--config", str(cfg), "--base", "smol", "--data", str(data), "--name", "zorb",
                   "--batch-size", "8", "--epochs", "3", "--no-add", env={})
    assert again.returncode == 0 and "resumed from step 9" in again.stderr  # the checkpoint, not a new run


def test_bad_training_line_is_named(setup: tuple[Server, Path, Path]) -> None:
    _, cfg, tmp = setup
    bad = tmp / "bad.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    bad.write_text(good + "\n" + good + "\n" + '{"messages": [{"role": "user", "content": "no answer"}]}\n')
    run = hearth("finetune", "--config", str(cfg), "--base", "smol", "--data", str(bad), env={})
    assert run.returncode == 2 and "bad.jsonl line 3" in run.stderr
    bad.write_text(good + "\n{not json\n")
    run = hearth("finetune", "--config", str(cfg), "--base", "smol", "--data", str(bad), env={})
    assert run.returncode == 2 and "bad.jsonl line 2: not JSON" in run.stderr
    run = hearth("finetune", "--config", str(cfg), "--base", "nope", "--data", str(bad), env={})
    assert run.returncode != 0 and "neither a local model" in run.stderr


def test_eval_needs_a_gateway(setup: tuple[Server, Path, Path]) -> None:
    _, _, tmp = setup
    held = write(tmp / "held2.jsonl", HELD_OUT[:1])
    run = hearth("eval", "smol", "--data", str(held), env={"HEARTH_URL": "http://127.0.0.1:9"})
    assert run.returncode == 1 and "cannot reach the gateway" in run.stderr
    with urllib.request.urlopen(setup[0].url + "/health") as r:
        assert r.status == 200

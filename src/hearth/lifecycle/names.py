"""What a user may type after `hearth pull` (or send as `/api/pull`'s `model`), and where it points on the Hub.

Three spellings, because users arrive from three places:
- a short name from the catalog below (`qwen2.5:1.5b`), as an Ollama user types it;
- a Hugging Face repository with an optional quantization tag (`Qwen/Qwen2.5-1.5B-Instruct-GGUF:q4_k_m`,
  also with Ollama's `hf.co/` prefix); without a tag the repository's Q4_K_M file is taken, as Ollama does;
- a repository and one file in it (`bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_K_M.gguf`).

The catalog names repositories and quantizations, never file names: the file is found by listing the
repository, so a renamed file upstream does not break a short name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hearth.core.errors import BadRequest

# Short name -> (repository, quantization). Official Qwen repositories, plus SmolLM2 for small machines.
CATALOG: dict[str, tuple[str, str]] = {
    "qwen2.5:0.5b": ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "q4_k_m"),
    "qwen2.5:1.5b": ("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "q4_k_m"),
    "qwen2.5:3b": ("Qwen/Qwen2.5-3B-Instruct-GGUF", "q4_k_m"),
    "qwen2.5:7b": ("Qwen/Qwen2.5-7B-Instruct-GGUF", "q4_k_m"),
    "qwen2.5-coder:0.5b": ("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "q4_k_m"),
    "qwen2.5-coder:1.5b": ("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "q4_k_m"),
    "qwen2.5-coder:7b": ("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "q4_k_m"),
    "qwen3:0.6b": ("Qwen/Qwen3-0.6B-GGUF", "q8_0"),
    "qwen3:1.7b": ("Qwen/Qwen3-1.7B-GGUF", "q8_0"),
    "smollm2:135m": ("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "q8_0"),
    "smollm2:360m": ("HuggingFaceTB/SmolLM2-360M-Instruct-GGUF", "q8_0"),
}
DEFAULT_QUANT = "q4_k_m"
# Taken, in this order, when the preferred quantization is not in a repository.
FALLBACK_QUANTS = ("q4_k_m", "q4_k_s", "q4_0", "q5_k_m", "q8_0", "q6_k", "f16")

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TAG = re.compile(r"^[\w.-]+$")
SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelRef:
    """A parsed name: the name the model is served under, and where its files are on the Hub."""

    name: str
    repo: str
    quant: str | None  # wanted quantization tag; None when `file` names the file
    file: str | None = None


def parse_ref(raw: str) -> ModelRef:
    """Parse what a user typed; the served name keeps their spelling (less `hf.co/` and `:latest`)."""
    text = raw.strip()
    if not text:
        raise BadRequest("model: must not be empty", param="model")
    for prefix in ("https://huggingface.co/", "huggingface.co/", "hf.co/"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    text = text.removesuffix(":latest")
    short = CATALOG.get(text.lower())
    if short is not None:
        return ModelRef(text.lower(), short[0], short[1])
    if text.lower().endswith(".gguf"):
        parts = text.split("/")
        repo, file = "/".join(parts[:2]), "/".join(parts[2:])  # a file may sit in a folder of the repository
        if not _REPO.match(repo) or not file:
            raise BadRequest(f"{raw!r}: a file is named as owner/repository/file.gguf", param="model")
        return ModelRef(text, repo, None, file)
    repo, _, tag = text.partition(":")
    if not _REPO.match(repo) or (tag and not _TAG.match(tag)):
        known = ", ".join(CATALOG)
        raise BadRequest(
            f"{raw!r} is neither a known short name ({known}) nor a Hugging Face repository "
            "(owner/repository, optionally :quantization such as :q4_k_m, or owner/repository/file.gguf)",
            param="model",
        )
    return ModelRef(f"{repo}:{tag.lower()}" if tag else repo, repo, tag.lower() if tag else None)


def pick_files(ref: ModelRef, files: list[str]) -> list[str]:
    """The GGUF file(s) of `ref` among a repository's files: one file, or every part of a split model."""
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    if ref.file is not None:
        if ref.file not in files:
            raise LookupError(f"{ref.repo} has no file {ref.file}")
        return _with_parts(ref.file, ggufs)
    if not ggufs:
        raise ValueError(f"{ref.repo} holds no GGUF file (look for a repository whose name ends in -GGUF)")
    # Files that are not the model itself (projectors for images, imatrix data) are never picked.
    candidates = [f for f in ggufs if not re.search(r"mmproj|imatrix", f, re.IGNORECASE)]
    wanted = [ref.quant] if ref.quant else list(FALLBACK_QUANTS)
    for quant in wanted:
        hits = sorted(f for f in candidates if _quant_of(f) == quant)
        if hits:
            return _with_parts(hits[0], ggufs)
    if ref.quant is None and len({SPLIT.sub(".gguf", f) for f in candidates}) == 1:
        return _with_parts(sorted(candidates)[0], ggufs)  # the only model in the repository
    have = sorted({q for f in candidates if (q := _quant_of(f))})
    raise LookupError(f"{ref.repo} has no {ref.quant or DEFAULT_QUANT} file; it has: {', '.join(have) or 'none'}")


def _quant_of(file: str) -> str | None:
    stem = SPLIT.sub("", file.rsplit("/", 1)[-1])
    stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
    m = re.search(r"(?:^|[-_.])(i?q\d(?:_[a-z0-9]+)*|f16|bf16|f32)$", stem, re.IGNORECASE)
    return m.group(1).lower() if m else None


def _with_parts(first: str, ggufs: list[str]) -> list[str]:
    """A split model (`-00001-of-00003.gguf`) is loaded from its first part with the others beside it."""
    m = SPLIT.search(first)
    if not m:
        return [first]
    base = first[: m.start()]
    parts = sorted(f for f in ggufs if f.startswith(base) and SPLIT.search(f))
    if len(parts) != int(m.group(2)):
        raise LookupError(f"{first}: expected {int(m.group(2))} parts, the repository has {len(parts)}")
    return parts

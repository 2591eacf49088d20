"""What every knowledge-base store shares: documents, chunks, hits, the store interface, filters."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hearth.core.errors import BadRequest, HearthError
from hearth.core.types import ChatRequest

# The text to retrieve with for a request's latest turn (a follow-up made standalone).
Rewrite = Callable[[ChatRequest], Awaitable[str]]

if TYPE_CHECKING:  # the HTTP layer imports this module; numpy loads only when a knowledge base is used
    import numpy as np

NAME = re.compile(r"^(?!.*\.\.)[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")  # also a valid Chroma name part


class KnowledgeBaseNotFound(HearthError):
    status = 404
    type = "invalid_request_error"
    code = "knowledge_base_not_found"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise BadRequest(f"knowledge base name {name!r} is invalid: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting and ending with a letter or digit", param="kb")
    return name


@dataclass(slots=True)
class DocInfo:
    source: str
    hash: str
    chunks: int = 0
    size: int = 0
    updated: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class NewChunk:
    text: str
    title: str
    line_start: int
    line_end: int
    terms: list[str]


@dataclass(slots=True)
class Hit:
    id: str
    text: str
    source: str
    title: str
    line_start: int
    line_end: int
    metadata: dict[str, Any]
    score: float = 0.0
    vector_score: float | None = None
    keyword_score: float | None = None


class KnowledgeStore(Protocol):
    """One knowledge base. Writes are per document and atomic; searches return hits best first."""

    name: str

    async def documents(self) -> dict[str, DocInfo]: ...

    async def replace(self, doc: DocInfo, chunks: list[NewChunk], vectors: np.ndarray) -> None: ...

    async def remove(self, sources: list[str]) -> int: ...

    async def chunks(self, source: str) -> list[NewChunk]:
        """A document's chunks as stored, in order (re-embedding with another model starts from them)."""
        ...

    async def chunk_vectors(self, source: str) -> dict[str, np.ndarray]:
        """The current vectors of a document's chunks, by embedded text ("title\ntext")."""
        ...

    async def vector_search(self, vector: np.ndarray, k: int, where: dict[str, Any] | None) -> list[Hit]: ...

    async def keyword_search(self, terms: list[str], k: int, where: dict[str, Any] | None) -> list[Hit]: ...

    async def stats(self) -> dict[str, Any]: ...

    async def warm(self) -> None:
        """Load what searches need, ahead of the first one."""

    def save(self) -> None:
        """Persist in-process indexes so the next process starts from them (after an ingest from the CLI)."""


class Catalog(Protocol):
    async def names(self) -> list[str]: ...

    async def open(self, name: str, *, create: bool = False) -> KnowledgeStore: ...

    async def drop(self, name: str) -> bool: ...

    async def close(self) -> None: ...


def prepared(where: dict[str, Any]) -> dict[str, Any]:
    """A filter to match against many documents: its lists of accepted values as sets, so that a tenant's list
    of 100,000 values costs one lookup per document, not 100,000."""
    out: dict[str, Any] = {}
    for key, want in where.items():
        try:
            out[key] = frozenset(want) if isinstance(want, list) else want
        except TypeError:  # an unhashable value in the list: compared one by one
            out[key] = want
    return out


def matches(source: str, metadata: dict[str, Any], where: dict[str, Any]) -> bool:
    """Filters: `source` (a path or list of paths), `source_prefix`, and any document metadata key
    (a value or a list of accepted values)."""
    for key, want in where.items():
        if key == "source_prefix":
            if not source.startswith(str(want)):
                return False
            continue
        have = source if key == "source" else metadata.get(key)
        if isinstance(want, list | frozenset):
            if have not in want:
                return False
        elif have != want:
            return False
    return True

"""Adaptive chunking: split by the document's own structure, then pack to a token budget.

1. Sections by kind: code at top-level functions and classes (with their decorators and comments),
   Markdown at `#` headings, reStructuredText at underlined headings; prose is one section. Each
   section knows its title path ("Guide > Install > Linux").
2. Units inside a section: lines for code; sentences for text, cut after . ! ? and Chinese 。！？；
   and at blank lines.
3. Packing: consecutive units up to `max_tokens` (counted by the embedding model's tokenizer), with
   `overlap` tokens of trailing units repeated at the start of the next chunk. A unit longer than the
   budget (a huge line, Chinese without punctuation) is cut by characters.

A chunk is always one contiguous span of the original text, so its line range is exact.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

TokenCounter = Callable[[list[str]], list[int]]


@dataclass(slots=True)
class Piece:
    text: str
    title: str  # the heading path, " > " joined; the function or class for code
    line_start: int  # 1-based, inclusive
    line_end: int


@dataclass(slots=True)
class _Section:
    title: str
    start: int  # character offsets into the document
    end: int


def approx_tokens(texts: list[str]) -> list[int]:
    """Used when no tokenizer is given: ~4 characters per Latin token, one per Chinese character."""
    return [len(re.findall(r"[\u3400-\u9fff]", t)) + len(t) // 4 + 1 for t in texts]


def chunk(
    text: str, kind: str, count: TokenCounter | None = None, max_tokens: int = 200, overlap: int = 30
) -> list[Piece]:
    count = count or approx_tokens
    if not text.strip():
        return []
    if kind == "code":
        sections = _code_sections(text)
    elif kind == "markdown":
        sections = _markdown_sections(text)
    elif kind == "rst":
        sections = _rst_sections(text)
    else:
        sections = [_Section("", 0, len(text))]
    sections = _merge_bare_headings(text, sections)
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    pieces: list[Piece] = []
    for sec in sections:
        units = _units(text, sec, kind)
        if not units:
            continue
        sizes = count([text[a:b] for a, b in units])
        units, sizes = _split_oversized(text, units, sizes, max_tokens)
        for a, b in _pack(units, sizes, max_tokens, overlap):
            body = text[a:b].strip()
            if not body:
                continue
            lead = len(text[a:b]) - len(text[a:b].lstrip())
            a += lead
            b = a + len(body)
            pieces.append(Piece(body, sec.title, bisect.bisect_right(line_starts, a),
                                bisect.bisect_right(line_starts, max(a, b - 1))))
    return pieces


# --- sections ---------------------------------------------------------------------------------------

_CODE_DEF = re.compile(
    r"^(?:export\s+)?(?:default\s+)?(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?(?:static\s+)?(?:public\s+|private\s+|"
    r"protected\s+)?(?:(?:def|class|function|func|fn|impl|struct|enum|trait|interface|type|module|object)\b|"
    r"(?:const|let|var)\s+\w+\s*=\s*(?:async\s*)?(?:\(|function\b)).*$",
    re.M,
)
_NAME = re.compile(r"(?:def|class|function|func|fn|impl|struct|enum|trait|interface|type|module|object|const|let|var)"
                   r"\s+(?:\([^)]*\)\s*)?([A-Za-z_$][\w$]*)")


def _code_sections(text: str) -> list[_Section]:
    starts: list[tuple[int, str]] = []
    for m in _CODE_DEF.finditer(text):
        s = m.start()
        # Decorators and comments right above a definition belong to it.
        while True:
            prev_end = s - 1
            if prev_end <= 0:
                break
            prev_start = text.rfind("\n", 0, prev_end) + 1
            prev = text[prev_start:prev_end]
            if prev.startswith(("@", "#", "//", "/*", " *", "///", "--")) and prev.strip():
                s = prev_start
            else:
                break
        found = _NAME.search(m.group())
        starts.append((s, found.group(1) if found else m.group().strip()[:60]))
    if not starts:
        return [_Section("", 0, len(text))]
    out = []
    if starts[0][0] > 0:
        out.append(_Section("", 0, starts[0][0]))
    for i, (s, title) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        out.append(_Section(title, s, end))
    return out


_FENCE = re.compile(r"^(```|~~~)")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _markdown_sections(text: str) -> list[_Section]:
    out: list[_Section] = []
    path: list[tuple[int, str]] = []
    start, title, pos, fenced = 0, "", 0, False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (m := _MD_HEADING.match(line)):
            if pos > start:
                out.append(_Section(title, start, pos))
            level = len(m.group(1))
            path = [(lv, t) for lv, t in path if lv < level] + [(level, m.group(2))]
            title = " > ".join(t for _, t in path)
            start = pos
        pos += len(line)
    if pos > start:
        out.append(_Section(title, start, pos))
    return out


_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")


def _rst_sections(text: str) -> list[_Section]:
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln))
    levels: list[str] = []
    path: list[tuple[int, str]] = []
    out: list[_Section] = []
    start, title = 0, ""
    for i in range(1, len(lines)):
        m = _RST_UNDERLINE.match(lines[i])
        heading = lines[i - 1].strip()
        if not m or not heading or _RST_UNDERLINE.match(lines[i - 1]) or len(lines[i].strip()) < len(heading):
            continue
        ch = m.group(1)
        if ch not in levels:
            levels.append(ch)
        level = levels.index(ch)
        s = offsets[i - 1]
        if s > start:
            out.append(_Section(title, start, s))
        path = [(lv, t) for lv, t in path if lv < level] + [(level, heading)]
        title = " > ".join(t for _, t in path)
        start = s
    if len(text) > start:
        out.append(_Section(title, start, len(text)))
    return out


def _merge_bare_headings(text: str, sections: list[_Section]) -> list[_Section]:
    """A heading followed directly by a sub-heading ("# Guide" then "## Install") is no chunk of its own:
    it joins the next section, which keeps the deeper title."""
    out: list[_Section] = []
    pending: int | None = None
    for i, sec in enumerate(sections):
        body = text[sec.start : sec.end].strip().split("\n", 1)
        bare = sec.title and i + 1 < len(sections) and (len(body) == 1 or not body[1].strip(" \t\n=-~^\"'`#*+:."))
        if bare:
            pending = sec.start if pending is None else pending
            continue
        out.append(_Section(sec.title, pending if pending is not None else sec.start, sec.end))
        pending = None
    return out


# --- units and packing --------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？；])[”’」』）]*|\n[ \t]*\n\s*")


def _units(text: str, sec: _Section, kind: str) -> list[tuple[int, int]]:
    if kind == "code":
        out, pos = [], sec.start
        for line in text[sec.start : sec.end].splitlines(keepends=True):
            out.append((pos, pos + len(line)))
            pos += len(line)
        return out
    out, a = [], sec.start
    for m in _SENTENCE_END.finditer(text, sec.start, sec.end):
        if m.end() > a:
            out.append((a, m.end()))
            a = m.end()
    if a < sec.end:
        out.append((a, sec.end))
    return [(x, y) for x, y in out if text[x:y].strip()]


def _split_oversized(
    text: str, units: list[tuple[int, int]], sizes: list[int], max_tokens: int
) -> tuple[list[tuple[int, int]], list[int]]:
    out_u, out_s = [], []
    for (a, b), n in zip(units, sizes, strict=True):
        if n <= max_tokens:
            out_u.append((a, b))
            out_s.append(n)
            continue
        parts = -(-n // max_tokens)
        step = -(-(b - a) // parts)
        for k in range(a, b, step):
            out_u.append((k, min(b, k + step)))
            out_s.append(-(-n // parts))
    return out_u, out_s


def _pack(units: list[tuple[int, int]], sizes: list[int], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        total, j = 0, i
        while j < len(units) and (j == i or total + sizes[j] <= max_tokens):
            total += sizes[j]
            j += 1
        spans.append((units[i][0], units[j - 1][1]))
        if j >= len(units):
            break
        # Start the next chunk a few units back, so a fact split across the boundary is whole in one.
        back, k = 0, j
        while k - 1 > i and back + sizes[k - 1] <= overlap:
            k -= 1
            back += sizes[k]
        i = k
    return spans

"""Text features shared by the intent tracker, the follow-up rewriter and the quality evaluator.

All of them must run on every request in well under a millisecond and work for Chinese and English
alike, so they are character-level: character bigrams for Han text (which has no spaces), lowercased
words for Latin text. No tokenizer, no model.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_WORD = re.compile(r"[a-z0-9][a-z0-9'+#.-]*[a-z0-9+#]|[a-z0-9]", re.IGNORECASE)
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")

# Words that carry no topic: they would make every pair of English turns look alike.
STOP = frozenset(
    """a an the and or but if then so of to in on at by for with from about as is are was were be been being
    am do does did doing have has had having i me my mine you your yours he him his she her it its we us our
    they them their this that these those there here what which who whom whose when where why how can could
    would should will shall may might must not no yes please thanks thank just also too very really more most
    some any all each every one ones other another into over under again up down out off than only own same
    s t don't can't i'm it's that's what's let's let me tell give make get got want need know like ok okay
    well now oh hi hey""".split()
)
# Han characters that carry no topic (particles, pronouns, copulas).
HAN_STOP = frozenset(
    "的了吗呢吧啊呀么是在有和与也就都还又很我你他她它们这那个一不没怎什哪谁多少几把被给让对说要想会能可以"
)


def han_share(text: str) -> float:
    """Han characters among the letters: > 0.3 reads as Chinese."""
    letters = len(_LETTER.findall(text))
    return len(_HAN.findall(text)) / letters if letters else 0.0


def language(text: str) -> str:
    """zh, en (any Latin-script text) or "" (no letters: numbers, code symbols, emoji)."""
    letters = len(_LETTER.findall(text))
    if not letters:
        return ""
    return "zh" if len(_HAN.findall(text)) / letters > 0.3 else "en"


def terms(text: str) -> list[str]:
    """Content terms: Latin words not in STOP, and Han bigrams (single characters for one-character runs)
    that are not made only of particles."""
    out = [w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOP and len(w) > 1]
    for run in _HAN_RUN.findall(text):
        if len(run) == 1:
            if run not in HAN_STOP:
                out.append(run)
            continue
        for i in range(len(run) - 1):
            bg = run[i : i + 2]
            if not (bg[0] in HAN_STOP and bg[1] in HAN_STOP):
                out.append(bg)
    return out


def bag(text: str) -> Counter[str]:
    return Counter(terms(text))


def cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    if not dot:
        return 0.0
    return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))


def overlap(a: Counter[str], b: Counter[str]) -> float:
    """Share of a's distinct terms that b also has."""
    return sum(1 for k in a if k in b) / len(a) if a else 0.0

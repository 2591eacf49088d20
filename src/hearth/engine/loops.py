"""Ends an answer that has started repeating itself.

Why: small models under greedy or low-temperature sampling fall into loops ("...不可分割的一部分。...不可分割的
一部分。" for minutes), and a voice device speaks every word of it; a client that sends no `max_tokens` (xiaozhi
sends none by default) gets the whole context's worth. The guard watches the generated token ids: when the
latest tokens are the same unit of `p` tokens over and over (at least three times, and at least MIN_SPAN tokens
in all), the answer ends there with finish reason "stop", as if the model had said what it had to say.

It is exact repetition only (a loop that changes a number each time is not caught), so ordinary text, lists
and code, which repeat in parts but not as a whole unit three times running, are left alone; answers under a
grammar (JSON) are not guarded, since an array may legitimately repeat one item. Cost per token: one pass
over the periods (64 comparisons), a few microseconds.
"""

from __future__ import annotations

MAX_PERIOD = 64  # the longest repeating unit looked for, in tokens (a long sentence)
MIN_SPAN = 48  # tokens that must be repetition before the answer is cut (48 identical tokens, or 3 x 16, ...)
# For period p: how many consecutive tokens must equal the token p before them, so that the last
# max(MIN_SPAN, 3p) tokens are copies of one unit.
_NEED = [0, *(max(MIN_SPAN, 3 * p) - p for p in range(1, MAX_PERIOD + 1))]


class LoopGuard:
    __slots__ = ("runs", "tokens")

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.runs = [0] * (MAX_PERIOD + 1)  # per period: how many latest tokens equal the one p before

    def looping(self, tok: int) -> bool:
        """Record `tok`; True when the answer has become a loop."""
        t = self.tokens
        t.append(tok)
        n = len(t)
        if n > 4 * MAX_PERIOD:  # only the tail matters
            del t[: n - 3 * MAX_PERIOD]
            n = len(t)
        runs, need = self.runs, _NEED
        hit = False
        for p in range(1, min(MAX_PERIOD, n - 1) + 1):
            if t[n - 1 - p] == tok:
                r = runs[p] + 1
                runs[p] = r
                if r >= need[p]:
                    hit = True
            else:
                runs[p] = 0
        return hit

"""What this machine's engine steps cost, learnt from the steps it runs, and the voice devices that buys.

The scheduler's first figures came from another CPU (one stream at ~60 tok/s, a step of one costing a third of a
step of four); on a CPU 2.4x slower they were wrong. Here every step that only decodes records its time (the
decode and the sampling of its tokens) under its width, and every step that only prefills records its tokens per
second, as moving averages, so the figures follow the machine (and what else runs on it) instead of a constant.

From them, `devices`: how many paced voice streams this engine keeps ahead of their listeners. A listener takes
speech at about `SPEECH_TOKENS_PER_SECOND` (4.5 CJK characters a second at about one token each; English at 14
characters a second is fewer tokens), and at width n each stream gets one token per step, so n streams are held
while a step of n takes at most `HEADROOM / SPEECH_TOKENS_PER_SECOND` seconds: the rest of the time is left to the
prefill of new turns. Widths never measured are not claimed (the figure is a lower bound until wider steps have
run); between two measured widths the step time is interpolated.
"""

from __future__ import annotations

SPEECH_TOKENS_PER_SECOND = 4.5
HEADROOM = 0.8  # the share of the engine's time paced streams may take; new turns' prefill gets the rest
_ALPHA = 0.1  # weight of a new step in the moving averages: about the last 20 steps of a width count


class StepCosts:
    def __init__(self, max_width: int) -> None:
        self.max_width = max(1, max_width)
        self.decode = [0.0] * (self.max_width + 1)  # seconds of a decode-only step, by width (0: never seen)
        self.prefill_tps = 0.0

    def step(self, decoding: int, tokens: int, seconds: float) -> None:
        """One engine step: `decoding` sequences got a token, `tokens` were fed in all. A step that mixed decoding
        and prefill says neither's cost, and is not counted."""
        if decoding == tokens:
            self.decoded(decoding, seconds)
        elif not decoding:
            self.prefilled(tokens, seconds)

    def decoded(self, width: int, seconds: float) -> None:
        if 1 <= width <= self.max_width and seconds > 0:
            old = self.decode[width]
            self.decode[width] = seconds if old == 0.0 else old + _ALPHA * (seconds - old)

    def prefilled(self, tokens: int, seconds: float) -> None:
        if tokens >= 16 and seconds > 0:  # a few tokens say more about the step's fixed cost than about prefill
            tps = tokens / seconds
            self.prefill_tps = tps if self.prefill_tps == 0.0 else self.prefill_tps + _ALPHA * (tps - self.prefill_tps)

    def step_seconds(self, width: int) -> float | None:
        """A decode step of `width` sequences: measured, interpolated between measured widths, or None."""
        if self.decode[width]:
            return self.decode[width]
        below = next((w for w in range(width - 1, 0, -1) if self.decode[w]), None)
        above = next((w for w in range(width + 1, self.max_width + 1) if self.decode[w]), None)
        if below is None or above is None:
            return None
        lo, hi = self.decode[below], self.decode[above]
        return lo + (hi - lo) * (width - below) / (above - below)

    def devices(self) -> int:
        """Paced voice streams held at once (see the module's text); 0 until a decode step has been measured."""
        budget = HEADROOM / SPEECH_TOKENS_PER_SECOND
        held = 0
        for width in range(1, self.max_width + 1):
            seconds = self.step_seconds(width)
            if seconds is None:
                continue
            if seconds > budget:
                break
            held = width
        return held

    def alone_pays(self, fill: int) -> bool:
        """Whether a step of one sequence takes at most half a step of `fill` here, so that serving the most
        urgent turn alone gets its tokens at least twice as fast as sharing. The scheduler was written for a CPU
        where one cost a third of four; on the 2-core Xeon VM one costs 0.62 of four (36 vs 58 ms), and streams
        that sat out for it ran dry. Until both widths have run, the scheduler keeps its first assumption."""
        one, full = self.step_seconds(1), self.step_seconds(min(fill, self.max_width))
        return one is None or full is None or one <= full / 2

    def widest_measured(self) -> int:
        return max((w for w in range(1, self.max_width + 1) if self.decode[w]), default=0)

"""One generation as the engine thread sees it, and the engine's counters.

A job is created on the event loop (by the local backend) and from `submit()` on owned by the engine
thread; the loop side only sets `cancelled`. Its pace fields let the scheduler see how far the stream is
ahead of its consumer: `t_play` is when its first speakable segment went out, `audio` how many seconds
of speech it has produced.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from typing import Any

from hearth.core.errors import HearthError
from hearth.core.pace import Pace
from hearth.core.types import Finish, Sampling, TextDelta, Usage
from hearth.engine.loops import LoopGuard
from hearth.speech.cutting import Segmenter

# What the engine thread hands the event loop for a job: chunks, and at most one error that ends it.
EngineItem = TextDelta | Usage | Finish | HearthError
Emit = Callable[[EngineItem], None]

DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}


class GenJob:
    """One generation. Created on the event loop, then owned by the engine thread."""

    __slots__ = (
        "adapter", "audio", "cached", "cancelled", "decoder", "emit", "grammar", "guard", "heard", "held", "last_token",
        "logprob", "logprobs", "max_new", "n_gen", "pace", "pos", "prompt", "sampler", "sampling", "slot", "stops",
        "t_admit", "t_arrive", "t_first", "t_play", "todo",
    )

    def __init__(
        self, prompt: list[int], sampling: Sampling, max_new: int, emit: Emit, logprobs: bool = False,
        grammar: str | None = None, pace: Pace | None = None, adapter: str = "", loop_guard: bool = True,
    ) -> None:
        self.prompt = prompt
        self.adapter = adapter  # a LoRA adapter loaded in the engine ("": none)
        self.pace = pace
        self.t_arrive = time.perf_counter()
        self.t_play = 0.0  # when the first segment was out (paced streams); 0: not yet
        self.audio = 0.0  # seconds of speech produced
        self.heard = Segmenter() if pace is not None else None  # where the listener's segments end
        self.grammar = grammar
        # Answers under a grammar may repeat an item legitimately (a JSON array): those are not guarded.
        self.guard = LoopGuard() if loop_guard and grammar is None else None
        self.logprobs = logprobs  # attach each token's log-probability to its text
        self.logprob = 0.0
        self.sampling = sampling
        self.max_new = max_new
        self.stops = [s for s in sampling.stop if s]
        self.emit = emit
        self.cancelled = False
        self.slot: Any = None
        self.sampler: Any = None
        self.todo: list[int] = []
        self.pos = 0
        self.cached = 0
        self.n_gen = 0
        self.last_token = -1
        self.held = ""  # text withheld because it may be the start of a stop string
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.t_admit = 0.0
        self.t_first = 0.0

    @property
    def paced(self) -> bool:
        return self.pace is not None

    @property
    def playing(self) -> bool:
        return self.t_play > 0.0

    def lead(self, now: float) -> float:
        return self.audio - (now - self.t_play)

    def spoke(self, text: str, now: float) -> None:
        """Account for text sent to a paced consumer. Only whole segments count as audio: a voice server
        cannot speak half a sentence, so text after the last segment end is not yet buffered speech."""
        assert self.pace is not None and self.heard is not None
        for segment in self.heard.feed(text):
            self.t_play = self.t_play or now
            self.audio += self.pace.seconds(segment)


class EngineStats:
    def __init__(self) -> None:
        self.prefix_hits = 0
        self.prefix_misses = 0
        self.reused_tokens = 0
        self.prefilled_tokens = 0
        self.generated_tokens = 0
        self.evictions = 0
        self.sat_out = 0  # decode turns skipped by paced streams that were ahead of their listener
        self.parked = 0  # paced streams that gave their place to a new turn
        self.adapter_steps = 0  # steps run under a LoRA adapter (the others ran the base model)
        self.loops_stopped = 0  # answers ended because they had started repeating themselves


def stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string: the text a job
    holds back (`GenJob.held`) until the next token says whether a stop string begins there."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best

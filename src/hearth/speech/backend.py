"""The speech stage: a pace for the engine's scheduler, TTS-sized segments for the client, and the figures
a voice product is judged by (time to the first segment, silences mid-answer).

Options per request: `"hearth": {"pace": ..., "segments": true}` in the body or the headers
`x-hearth-pace` / `x-hearth-segments`; per model in config (`pace:`, `segments:`), which is how the
built-in `voice` model turns both on for clients that can set only a base URL and a model name. It sits
outside the cache and the router, so cache replays and remote answers are segmented and measured too.
A request with neither option passes straight through.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable

from hearth.core.pace import Pace, parse_flag, parse_pace
from hearth.core.types import Backend, ChatRequest, Chunk, ErrorChunk, Finish, TextDelta, ToolCallDelta
from hearth.core.wrapper import WrappingBackend
from hearth.speech.segments import Playback, Segmenter

SpeechHook = Callable[[str, float], None]  # (model, seconds)


class SpeechBackend(WrappingBackend):
    def __init__(
        self, inner: Backend, *, pace: Pace | None = None, segments: bool = False,
        on_first_segment: SpeechHook | None = None, on_underrun: SpeechHook | None = None,
        max_tokens: int | None = None, stable_prefix: bool = False,
    ) -> None:
        """`max_tokens`: the answer length of paced requests that set none. `stable_prefix`: ask local models
        to keep the system prompt's changing lines out of the reusable prefix (`ChatRequest.stable_prefix`)."""
        super().__init__(inner)
        self.max_tokens = max_tokens
        self.stable_prefix = stable_prefix
        self.pace = pace
        self.segments = segments
        self.on_first_segment = on_first_segment or (lambda model, seconds: None)
        self.on_underrun = on_underrun or (lambda model, seconds: None)

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        steady = self.stable_prefix and not request.stable_prefix
        ext = request.extensions
        if self.pace is None and not self.segments and "pace" not in ext and "segments" not in ext:
            return self.inner.stream(dataclasses.replace(request, stable_prefix=True) if steady else request)
        pace = parse_pace(ext["pace"]) if "pace" in ext else self.pace
        segments = parse_flag(ext["segments"], "hearth.segments") if "segments" in ext else self.segments
        if pace is not None or steady:
            sampling = request.sampling
            if pace is not None and sampling.max_tokens is None and self.max_tokens is not None:
                sampling = dataclasses.replace(sampling, max_tokens=self.max_tokens)
            request = dataclasses.replace(request, pace=pace, sampling=sampling,
                                          stable_prefix=request.stable_prefix or self.stable_prefix)
        if pace is None and not segments:
            return self.inner.stream(request)
        return self._speak(request, pace, segments)

    async def _speak(self, req: ChatRequest, pace: Pace | None, segments: bool) -> AsyncIterator[Chunk]:
        t0 = time.perf_counter()
        cutter = Segmenter()
        playback = Playback(pace) if pace is not None else None
        first_done = False

        def arrived(segment: str) -> None:
            nonlocal first_done
            now = time.perf_counter()
            if not first_done:
                first_done = True
                self.on_first_segment(self.name, now - t0)
            if playback is not None and (lag := playback.arrive(segment, now)):
                self.on_underrun(self.name, lag)

        try:
            async for c in self.inner.stream(req):
                if type(c) is TextDelta:
                    pieces = cutter.feed(c.text)
                    for piece in pieces:
                        arrived(piece)
                    if segments:
                        for piece in pieces:
                            yield TextDelta(piece)
                    else:
                        yield c  # as it came; the segments only clock the listener
                    continue
                if type(c) is ToolCallDelta or type(c) is Finish or type(c) is ErrorChunk:
                    rest = cutter.flush()  # whatever text came stays before the call, the end or the error
                    if rest:
                        arrived(rest)
                        if segments:
                            yield TextDelta(rest)
                yield c
        except Exception:
            rest = cutter.flush()  # a failure mid-answer: the client still gets every word before it
            if rest and segments:
                yield TextDelta(rest)
            raise
        rest = cutter.flush()
        if rest:
            arrived(rest)
            if segments:
                yield TextDelta(rest)

"""Conversation intelligence as one gateway uses it: the intent annotator, the turn memory for sticky
routing, the follow-up rewriter for RAG, and the online quality score with its drift watch.

Built once by the composition root; each stage that uses a part gets it as a constructor argument.
Quality work never runs on the request path: the gateway hands finished answers to `observe`, which
schedules the scoring and returns.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from hearth import request_log
from hearth.config import Config
from hearth.convo import text as tx
from hearth.convo.drift import SIGNALS, DriftWatch
from hearth.convo.intent import IntentTracker
from hearth.convo.memory import TurnMemory
from hearth.convo.quality import QualityEvaluator, Report
from hearth.convo.rewrite import Rewriter
from hearth.core.collect import collect
from hearth.core.pipeline import Stream
from hearth.core.registry import ModelRegistry
from hearth.core.types import ChatRequest, Message, Sampling
from hearth.metrics import GatewayMetrics

log = logging.getLogger("hearth.convo")

CONVERSATION_EXT = "conversation"
MAX_PENDING = 64  # sampled answers waiting to be scored  # ChatRequest.extensions key for the client's conversation id


class Conversation:
    """The conversation-intelligence parts of one gateway, built once by the composition root.

    `multilingual`: the local embedding models that read Chinese (relevance of a Chinese question to its answer
    is judged with one of them; an English-only model's cosines are noise there)."""

    def __init__(self, cfg: Config, registry: ModelRegistry, metrics: GatewayMetrics, *,
                 multilingual: Sequence[str] = (), rng: random.Random | None = None) -> None:
        c = cfg.conversation
        self.multilingual = list(multilingual)
        self.cfg = c
        self.registry = registry
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.tracker = IntentTracker()
        self.memory = (
            TurnMemory(c.memory_ttl, redis_url=(c.redis_url or cfg.cache.redis_url) if c.memory == "redis" else None,
                       redis_timeout=cfg.cache.redis_timeout)
            if c.labels_turns(cfg) and c.sticky else None
        )
        judge = c.quality.judge_model
        self.evaluator = QualityEvaluator(self._embed_pair, self.generator(judge) if judge else None)
        self.terms_only = QualityEvaluator(None)  # where no embedding model can judge relevance
        # Live answers: embedded only by a local model already in memory (never loaded, never a paid provider
        # just to score), at most `max_per_second` a second.
        self.online = QualityEvaluator(functools.partial(self._embed_pair, loaded_only=True))
        self._allowance, self._allowance_at = 1.0, time.monotonic()
        self.drift = DriftWatch(c.quality.drift_window, c.quality.drift_baseline, c.quality.drift_min_samples)
        rewrite_model = c.rewrite_model or cfg.rag.chat_model
        self.rewriter = Rewriter(c.rewrite, self.generator(rewrite_model) if c.rewrite == "llm" else None,
                                 self.tracker)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watched: set[str] = set()

    # --- intents ---------------------------------------------------------------------------------

    def annotate(self, request: ChatRequest) -> None:
        """Label the request's latest turn (the gateway calls this before resolving the model)."""
        if request.intent is not None:
            return
        conversation = request.extensions.get(CONVERSATION_EXT)
        conversation = conversation[:200] if isinstance(conversation, str) and conversation else None
        if request.prompt is not None:
            request.intent = self.tracker.label(request.prompt, (), conversation)
        elif request.messages:
            request.intent = self.tracker.track(request.messages, conversation)

    # --- quality ---------------------------------------------------------------------------------

    async def _embed_pair(self, question: str, answer: str, *, loaded_only: bool = False) -> object:
        """Relevance needs a model that reads both languages: e5 when either side is Chinese and it is here.
        `loaded_only`: only a local model already in memory (LookupError otherwise: the terms judge alone)."""
        zh = tx.language(question) == "zh" or tx.language(answer) == "zh"
        model = (self.multilingual[0] if zh and self.multilingual else None) or self.registry.default_embedder()
        if model is None:
            raise LookupError("no embedding model")
        if loaded_only and not getattr(self.registry.embedder(model), "loaded", False):
            raise LookupError(f"embedding model {model} is not in memory")
        return (await self.registry.embed(model, [question, answer[:2000]], input_type="query")).vectors

    def generator(self, model: str | None) -> Callable[[str], Awaitable[str]]:
        """A prompt -> text function over a served model (the judge, the LLM rewrite): greedy, 64 tokens."""

        async def generate(prompt: str) -> str:
            name = model or self.registry.default_chat()
            req = ChatRequest(name, [Message("user", prompt)], sampling=Sampling(max_tokens=64, temperature=0.0))
            return (await collect(self.registry.get(name).stream(req))).text

        return generate

    async def evaluate(self, question: str, answer: str, sources: Sequence[str] | None = None, *,
                       mode: str = "heuristic", finish_reason: str | None = None, online: bool = False
                       ) -> Report:
        """`online`: a live answer, embedded only by a model already in memory (see `self.online`)."""
        evaluator = self.online if online else self.evaluator
        try:
            return await evaluator.evaluate(question, answer, sources, mode=mode, finish_reason=finish_reason)
        except LookupError:
            if mode == "judge":
                raise
            # No embedding model (configured, or in memory for a live answer): terms alone judge relevance.
            return await self.terms_only.evaluate(question, answer, sources, finish_reason=finish_reason)

    async def window_score(self, request: ChatRequest, text: str) -> float:
        """For a router's escalation check: the first window of a local answer, not judged on completeness.
        An embedding model that fails (overloaded, missing) must not fail the answer: terms judge alone."""
        try:
            report = await self.evaluator.heuristic(request.question(), text, partial=True)
        except Exception as e:
            log.warning("quality check without embeddings: %r", e)
            report = await self.terms_only.heuristic(request.question(), text, partial=True)
        return report.overall

    def wants(self, request: ChatRequest) -> bool:
        """Sample this answer? Never while the backlog is full: scoring waits on the embedding thread, and a
        slow one (an ingest running) must not pile up answers in memory."""
        q = self.cfg.quality
        if q.sample <= 0 or q.max_per_second <= 0 or not request.question().strip():
            return False
        if not (q.sample >= 1 or self.rng.random() < q.sample):
            return False
        if len(self._tasks) >= MAX_PENDING:
            self.metrics.quality_skipped.inc(("backlog",))
            return False
        # A token bucket of max_per_second, holding up to one second's worth.
        now = time.monotonic()
        refill = (now - self._allowance_at) * q.max_per_second
        self._allowance = min(max(q.max_per_second, 1.0), self._allowance + refill)
        self._allowance_at = now
        if self._allowance < 1.0:
            self.metrics.quality_skipped.inc(("rate",))
            return False
        self._allowance -= 1.0
        return True

    def observe(self, request: ChatRequest, stream: Stream, text: str) -> None:
        """A sampled answer finished: score it in the background. Tool calls are not answers to score."""
        if stream.finish is not None and stream.finish.reason == "tool_calls":
            return
        task = asyncio.get_running_loop().create_task(self._score(request, stream, text))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _score(self, request: ChatRequest, stream: Stream, text: str) -> None:
        try:
            sources = [str(s.get("text", "")) for s in stream.sources or ()]
            finish = stream.finish.reason if stream.finish is not None else None
            report = await self.evaluate(request.question(), text, sources or None, finish_reason=finish, online=True)
        except Exception as e:
            log.warning("could not score an answer of %s: %r", stream.model, e)
            return
        route = stream.served_by
        stream.quality = report.overall
        self.metrics.quality.observe((stream.model, route), report.overall)
        intent = request.intent.label if request.intent else ""
        self.drift.add(stream.model, report.overall, refusal="refusal" in report.flags, route=route, intent=intent)
        self._watch(stream.model)
        if request_log.requests_log.isEnabledFor(logging.INFO):
            line = {"event": "quality", "request_id": request.extensions.get("request_id"), "model": stream.model,
                    "backend": route, "intent": intent or None, "quality": report.overall, "scores": report.scores,
                    "flags": report.flags}
            request_log.line(json.dumps(line, ensure_ascii=False))

    def _watch(self, model: str) -> None:
        if model in self._watched:
            return
        self._watched.add(model)
        for signal in SIGNALS:
            self.metrics.drift.set_function((model, signal), functools.partial(self.drift.drift, model, signal))
        self.metrics.drift_samples.set_function((model,), functools.partial(self._samples, model))

    def _samples(self, model: str) -> float:
        return float(self.drift.samples(model))

    async def close(self) -> None:
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=5.0)
            for t in late:
                t.cancel()
        if self.memory is not None:
            await self.memory.close()

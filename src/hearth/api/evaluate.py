"""`POST /v1/evaluate`: score an answer to a question, with the same evaluator that scores live traffic.

Body: `{"question", "answer", "sources"?: [text | {"text"}], "mode"?: "heuristic" | "judge", "model"?}`;
answer: `{"overall": 0..1, "scores": {...}, "suggestions": [...], "mode", "flags"}`. Judge mode asks
`model` (default `conversation.quality.judge_model`) for a grade through the same admission as a chat
request: the key must be allowed that model, and the grade counts against its limits and budget.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field

from hearth.access.prices import text_bytes
from hearth.api import openai
from hearth.api.common import GATEWAY, SERVICES, guarded, json_response
from hearth.api.gate import ACCESS, EXCHANGE, Route, add_routes, hold, open_stream
from hearth.api.schemas import _Body, read_parsed
from hearth.convo.quality import QualityEvaluator
from hearth.core.collect import collect
from hearth.core.errors import BadRequest
from hearth.core.types import ChatRequest, Message, Sampling

MAX_CHARS = 100_000


class Source(_Body):
    text: str
    title: str | None = None
    source: str | None = None


class EvaluateBody(_Body):
    question: str = Field(min_length=1, max_length=MAX_CHARS)
    answer: str = Field(max_length=MAX_CHARS)
    sources: list[str | Source] | None = Field(None, max_length=100)
    mode: Literal["heuristic", "judge"] = "heuristic"
    model: str | None = Field(None, description="judge mode: the model that grades")


@guarded(openai.render_error)
async def evaluate(request: web.Request) -> web.Response:
    body = await read_parsed(request, EvaluateBody)
    sources = [s if isinstance(s, str) else s.text for s in body.sources or ()]
    convo = request.app[SERVICES].convo
    if body.mode == "judge":
        model = body.model or convo.cfg.quality.judge_model
        if model is None:
            raise BadRequest("mode judge: name the grading model in `model` (no conversation.quality.judge_model "
                             "is configured)", param="model")
        registry = request.app[GATEWAY].registry
        model = registry.canonical(model)  # 404 for an unknown model
        registry.get(model)  # 400 for an embedding model
        judge_model = model

        async def grade(prompt: str) -> str:
            req = ChatRequest(judge_model, [Message("user", prompt)], sampling=Sampling(max_tokens=8, temperature=0.0))
            stream = await open_stream(request, "openai", req)
            try:
                return (await collect(stream)).text
            finally:
                await stream.aclose()

        evaluator = QualityEvaluator(None, grade)
        report = await evaluator.evaluate(body.question, body.answer, sources or None, mode="judge")
    else:  # the texts are embedded: they count toward the key's limits, at their estimate
        ex, access = request[EXCHANGE], request.app[ACCESS]
        ticket = await access.admit_plain(ex.principal, size=text_bytes([body.question, body.answer, *sources]))
        hold(ex, ticket)
        report = await convo.evaluate(body.question, body.answer, sources or None)
        if ticket is not None:
            await access.settle(ticket, "evaluate", None, 0)
    return json_response(report.as_dict())


ROUTES = [
    Route("POST", "/v1/evaluate", evaluate, "chat", "Score an answer to a question (heuristic or judge)", EvaluateBody),
]


def setup(app: web.Application) -> None:
    add_routes(app, ROUTES)

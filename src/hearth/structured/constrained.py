"""Structured output and tool calls, around every backend.

Local models are constrained while they decode (a grammar from the JSON schema or the tool set), so
their output is valid by construction and still streams. Remote providers get the request as is;
their answer is collected, checked against the schema (or each called function's parameters),
repaired when the slip is syntactic, and otherwise asked for again with the validation error fed
back, up to `max_repairs` times; after that a clear error, never invalid JSON presented as valid.
Requests without `response_format` or `tools` pass straight through, with no extra layer per chunk.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

from hearth.core.collect import collect
from hearth.core.errors import BadRequest, UpstreamError
from hearth.core.types import Backend, ChatRequest, Chunk, Finish, Message, TextDelta, ToolCallDelta
from hearth.core.work import offload
from hearth.core.wrapper import WrappingBackend
from hearth.structured.budget import PREFERRED_CHARS, BudgetTooSmall, Count, fit, fit_tools
from hearth.structured.schema import (
    SchemaError,
    canonical,
    check_schema,
    grammar_for,
    json_object_grammar,
    repair,
    validate,
)
from hearth.structured.tools import ToolCallParser, check_tools, tool_grammar, tool_mode

MAX_GRAMMAR = 512 * 1024  # characters of GBNF: llama.cpp parses it on the engine's thread, every request


def response_schema(rf: dict[str, Any] | None) -> tuple[str, Any]:
    """('none' | 'json_object' | 'json_schema', schema)."""
    if not rf or rf.get("type") in (None, "text"):
        return "none", None
    kind = rf.get("type")
    if kind == "json_object":
        return "json_object", None
    if kind == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise SchemaError("response_format.json_schema.schema: an object schema is required",
                              param="response_format")
        return "json_schema", spec["schema"]
    raise BadRequest(f"response_format.type: expected text, json_object or json_schema, got {kind!r}",
                     param="response_format")


# Appended (as a user turn the client never sees) after tool results, for local models under `tool_choice: auto`.
AFTER_TOOL_RESULT = "Answer my question in plain words using the tool result."


@lru_cache(maxsize=128)
def _tool_grammar_cached(tools_json: str, choice_json: str, parallel: bool, max_calls: int | None,
                         spoken: bool) -> str | None:
    return tool_grammar(json.loads(tools_json), json.loads(choice_json), parallel, max_calls, spoken)


def _fit_calls(tools: list[dict[str, Any]], budget: int, parallel: bool, count: Count | None,
               drop: bool) -> tuple[list[dict[str, Any]], int]:
    """Tools fitted so that every call the grammar allows closes within `budget`: up to 3 parallel calls share
    it when their arguments can still be PREFERRED_CHARS long (or as long as a single call's), else fewer.
    `drop`: tools whose smallest call does not fit are left out (under `auto`, the model may call another or
    answer in text) instead of refusing the request."""
    one, best = fit_tools(tools, budget, count, drop=drop)  # raises when not even one call fits
    if parallel:
        for n in (3, 2):
            try:
                fitted, cap = fit_tools(tools, budget // n, count, drop=drop)
                if len(fitted) < len(one):
                    continue  # sharing the budget would cost a tool that fits alone
            except BudgetTooSmall:
                continue
            if cap is None or best is None or cap >= min(PREFERRED_CHARS, best):
                return fitted, n
    return one, 1


class ConstrainedBackend(WrappingBackend):
    def __init__(self, inner: Backend, max_repairs: int = 2) -> None:
        super().__init__(inner)
        self.max_repairs = max_repairs
        engine = inner.local
        self.constrain_locally = engine is not None  # an engine we drive takes a grammar
        self._count: Count | None = engine.count_tokens if engine is not None else None
        # Fitting tokenizes skeletons and searches caps: done once per schema, tool set and budget, not per request.
        self._fit_schema = lru_cache(maxsize=256)(self._fit_schema_json)
        self._fit_tools = lru_cache(maxsize=128)(self._fit_tools_json)

    def _fit_schema_json(self, schema_json: str, budget: int) -> str:
        schema, _ = fit(json.loads(schema_json), budget, "response_format.json_schema.schema", self._count)
        return canonical(schema)

    def _fit_tools_json(self, tools_json: str, budget: int, parallel: bool, drop: bool) -> tuple[str, int, int]:
        """(the fitted tools as JSON, how many calls the grammar allows, how many tools were kept)."""
        tools = json.loads(tools_json)
        check_tools(tools)  # a broken schema is a 400 before the fitter reads it
        fitted, max_calls = _fit_calls(tools, budget, parallel, self._count, drop)
        return canonical(fitted), max_calls, len(fitted)

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if not request.response_format and not request.tools:
            return self.inner.stream(request)
        return self._local(request) if self.constrain_locally else self._remote(request)

    # --- local: constrained decoding -------------------------------------------------------------

    def _budget(self, req: ChatRequest) -> int | None:
        """Tokens the answer may take: `max_tokens`, else what the context leaves after the prompt (counted at a
        token per character, which overstates it)."""
        if req.sampling.max_tokens is not None:
            return req.sampling.max_tokens
        ctx = self.inner.info().context_length
        if ctx is None:
            return None
        prompt = len(req.prompt or "") + sum(len(m.content) for m in req.messages)
        return ctx - prompt if prompt < ctx else None

    def _prepare(self, req: ChatRequest) -> tuple[ChatRequest, bool]:
        """The request with its grammar (tools fitted to the budget, the schema checked and fitted), and whether
        the answer may hold tool calls. Run in the work pool: its cost grows with the schema."""
        grammar: str | None = None
        calls = False
        budget = self._budget(req)
        if req.tools:
            mode, _ = tool_mode(req.tool_choice)
            tools_json, parallel, max_calls = canonical(req.tools), req.parallel_tool_calls is not False, None
            if budget is not None and mode != "none":
                try:
                    tools_json, max_calls, kept = self._fit_tools(tools_json, budget, parallel, mode == "auto")
                except BudgetTooSmall:
                    if mode != "auto":
                        raise
                    mode = "none"  # no call fits, but a plain answer does
                else:
                    if kept < len(req.tools):  # show only the tools the grammar allows
                        req = dataclasses.replace(req, tools=json.loads(tools_json))
            if mode == "auto" and req.messages and req.messages[-1].role == "tool":
                # Given a tool's result, a small local model writes the call again as text (Qwen2.5 0.5B: every
                # time, in English and Chinese); one line asking for the answer makes it answer from the result.
                req = dataclasses.replace(req, messages=[*req.messages, Message("user", AFTER_TOOL_RESULT)])
            choice = "none" if mode == "none" else req.tool_choice
            # A paced request is spoken: its plain answer may hold no JSON-like fragment (speech stage sets `pace`).
            spoken = req.pace is not None
            grammar = _tool_grammar_cached(tools_json, canonical(choice), parallel, max_calls, spoken)
            if mode == "none":
                # Shown tools invite the small model to call anyway, so the prompt leaves them out and the
                # grammar allows only a plain answer (not even JSON that looks like a call).
                req = dataclasses.replace(req, tools=None, tool_choice=None)
            else:
                calls = True
        if grammar is None:
            kind, schema = response_schema(req.response_format)
            if kind == "json_schema":
                check_schema(schema, "response_format.json_schema.schema")
                schema_json = canonical(schema)
                grammar = grammar_for(self._fit_schema(schema_json, budget) if budget is not None else schema_json)
            elif kind == "json_object":
                grammar = json_object_grammar()
        if grammar is not None and len(grammar) > MAX_GRAMMAR:
            raise SchemaError(f"the grammar compiled from this request's schema or tools is {len(grammar)} "
                              f"characters, more than the {MAX_GRAMMAR} the engine takes; simplify the schema")
        return dataclasses.replace(req, grammar=grammar), calls

    async def _local(self, req: ChatRequest) -> AsyncIterator[Chunk]:
        req, may_call = await offload(lambda: self._prepare(req))
        parser = ToolCallParser() if may_call else None
        async for c in self.inner.stream(req):
            if parser is None:
                yield c
            elif type(c) is TextDelta:
                out, calls = parser.feed(c.text)
                if out:
                    yield TextDelta(out, c.logprob)
                for call in calls:
                    yield call
            elif type(c) is Finish:
                rest, called = parser.finish()
                if rest:
                    yield TextDelta(rest)
                yield Finish("tool_calls") if called else c
            else:
                yield c

    # --- remote: validate, repair, retry ----------------------------------------------------------

    async def _remote(self, req: ChatRequest) -> AsyncIterator[Chunk]:
        kind, schema = response_schema(req.response_format)
        if kind == "json_schema":  # the answer is validated against it here: the same bounds as a grammar's
            check_schema(schema, "response_format.json_schema.schema")
        if req.tools:
            check_tools(req.tools)
        fn_schemas = {}
        for t in req.tools or []:
            fn = t.get("function") or {}
            if fn.get("name"):
                fn_schemas[fn["name"]] = fn.get("parameters") or {}
        messages = list(req.messages)
        problem = ""
        for attempt in range(self.max_repairs + 1):
            attempt_req = dataclasses.replace(req, messages=messages, stream=False)
            answer = await collect(self.inner.stream(attempt_req))
            calls = answer.tool_calls
            check = functools.partial(self._check, answer.text, kind, schema, calls, fn_schemas)
            text, problem = await offload(check, size=len(answer.text))
            if not problem:
                if text:
                    yield TextDelta(text)
                for call in calls:
                    yield call
                if answer.usage is not None:
                    yield answer.usage
                yield answer.finish or Finish("tool_calls" if calls else "stop")
                return
            if attempt < self.max_repairs:  # ask again, showing the model what was wrong
                messages = [*messages, Message("assistant", text),
                            Message("user", f"Your previous answer was invalid ({problem}). Answer again with "
                                            "only the corrected JSON, nothing else.")]
        raise UpstreamError(f"provider {self.name!r} returned output that does not match the requested format after "
                            f"{self.max_repairs + 1} attempts: {problem}", code="invalid_output")

    @staticmethod
    def _check(text: str, kind: str, schema: Any, calls: list[ToolCallDelta],
               fn_schemas: dict[str, Any]) -> tuple[str, str]:
        """(possibly repaired text, problem or '')."""
        for c in calls:
            if c.name not in fn_schemas:
                return text, f"called unknown function {c.name!r}"
            try:
                args = json.loads(c.arguments or "{}")
            except ValueError:
                try:
                    args = repair(c.arguments)
                    c.arguments = json.dumps(args, ensure_ascii=False)
                except ValueError:
                    return text, f"arguments of {c.name} are not JSON"
            if err := validate(args, fn_schemas[c.name]):
                return text, f"arguments of {c.name} {err}"
        if kind == "none" or calls:
            return text, ""
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = repair(text)
            except ValueError:
                return text, "the answer is not JSON"
            text = json.dumps(value, ensure_ascii=False)
        if kind == "json_object" and not isinstance(value, dict):
            return text, "the answer is not a JSON object"
        if kind == "json_schema" and (err := validate(value, schema)):
            return text, f"the answer does not match the schema {err}"
        return text, ""

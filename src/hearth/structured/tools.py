"""Tool calling on the local model: a grammar over the model's own tool-call format, and its parser.

Qwen2.5 (and the many models trained on its template) answer a tool call as
`<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`, one block per call. The grammar allows
exactly that, with each function's arguments constrained to its parameter schema, and, for
`tool_choice: auto`, the alternative of a plain answer (text that does not start with `<` or `{`). So the
model's choice between answering and calling is free, but whatever it chooses is well-formed.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from hearth.core.errors import BadRequest
from hearth.core.types import ToolCallDelta
from hearth.structured.schema import check_schema

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_TOOLS = 128  # as OpenAI's API allows
# A plain answer may not open with "<", "{", "[", "(", a code fence or blank space: small models that mean to
# call a tool otherwise write the call as bare, bracketed or fenced JSON.
PLAIN_ANSWER = r"[^<{`\[( \t\n\x00] [^\x00]*"
# A spoken one (a paced request: a voice device reads it aloud) holds no brackets, braces or fences anywhere: a
# 0.5B model given a tool result writes `({"name": ..., "arguments": ...})` as text, and xiaozhi would say it.
SPOKEN_ANSWER = r"[^<>{}`\[\]( \t\n\x00] [^<>{}`\[\]\x00]*"


def _functions(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(tools) > MAX_TOOLS:
        raise BadRequest(f"tools: {len(tools)} tools, more than the {MAX_TOOLS} a request may offer", param="tools")
    out = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if t.get("type", "function") != "function" or not isinstance(fn, dict) or not fn.get("name"):
            raise BadRequest(f"tools.{i}: each tool must be {{'type': 'function', 'function': {{'name': ...}}}}",
                             param=f"tools.{i}")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        check_schema(params, f"tools.{i}.function.parameters")
        out.append({"name": fn["name"], "parameters": params})
    return out


def check_tools(tools: list[dict[str, Any]]) -> None:
    """400 for a tool that is not a function with a valid parameter schema."""
    _functions(tools)


def tool_mode(tool_choice: Any) -> tuple[str, str | None]:
    """('auto' | 'none' | 'required' | 'named', function name for 'named')."""
    if tool_choice is None or tool_choice == "auto":
        return "auto", None
    if tool_choice in ("none", "required"):
        return tool_choice, None
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
        if name:
            return "named", str(name)
    raise BadRequest(f"tool_choice: expected auto, none, required or a named function, got {tool_choice!r}",
                     param="tool_choice")


def tool_grammar(tools: list[dict[str, Any]], tool_choice: Any, parallel: bool = True,
                 max_calls: int | None = None, spoken: bool = False) -> str | None:
    """`max_calls` bounds parallel calls (a token budget pays for each); None: any number. `spoken`: the plain
    answer is read aloud, so it may hold no JSON-like fragment at all."""
    from hearth.structured.bounds import BoundedConverter, strict_chars

    plain = SPOKEN_ANSWER if spoken else PLAIN_ANSWER
    mode, only = tool_mode(tool_choice)
    if mode == "none":  # enforced, not requested: the answer may not even look like a call
        return f"root ::= {plain}\n"
    fns = _functions(tools)
    if only is not None:
        fns = [f for f in fns if f["name"] == only]
        if not fns:
            raise BadRequest(f"tool_choice: no tool named {only!r}", param="tool_choice")
    conv = BoundedConverter()
    alternatives = []
    for i, f in enumerate(fns):
        schema = conv.resolve_refs(f["parameters"], f"tool{i}")
        args = conv.visit(schema, f"tool{i}-args")
        head = conv._format_literal('{"name": ' + json.dumps(f["name"], ensure_ascii=False) + ', "arguments": ')
        alternatives.append(conv._add_rule(f"tool{i}-call", f'{head} {args} "}}"'))
    call = conv._add_rule("call", " | ".join(alternatives))
    block = conv._add_rule("tool-block", f"{conv._format_literal(OPEN + chr(10))} {call} "
                                         f"{conv._format_literal(chr(10) + CLOSE)}")
    if not parallel or max_calls == 1:
        calls = block
    elif max_calls is None:
        calls = f'{block} ("\\n" {block})*'
    else:
        calls = block + "".join(f' ("\\n" {block}' for _ in range(max_calls - 1)) + ")?" * (max_calls - 1)
    if mode == "auto":
        answer = conv._add_rule("answer", plain)
        conv._add_rule("root", f"{calls} | {answer}")
    else:
        conv._add_rule("root", calls)
    return strict_chars(str(conv.format_grammar()))


# The head of a call as the grammar writes it; the arguments follow, then `}`, a newline and CLOSE.
# (matched only once the arguments' first character is there, so that no blank before it counts as theirs).
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')
_END = re.compile(r"\}\s*" + re.escape(CLOSE))
_TAIL = "}\n" + CLOSE  # a suffix of the text that may begin this is held back: it may end the call
_MAX_HEAD = 1024  # characters of `{"name": ..., "arguments": ` (a tool name is at most a few dozen)


class ToolCallParser:
    """Splits a local model's output stream into text and tool calls, streaming each call's arguments.

    Text passes through at once, except a possible start of `<tool_call>`, which is held until it is decided.
    A call is announced (id and name) as soon as its head is complete, and its arguments then flow as they are
    decoded, as OpenAI streams them, so a voice server can act before the call ends; only a suffix that may be
    the call's closing `}` + `</tool_call>` waits for the next piece.
    """

    def __init__(self) -> None:
        self.buf = ""
        self.calling = False
        self.started = False
        self.index = -1  # the call being streamed
        self.args_at = -1  # where its arguments begin in buf; -1: its head is not complete yet
        self.sent = 0  # how much of buf has been sent as arguments

    def feed(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        """The text that can be shown now, and the call fragments decoded so far."""
        if self.calling:
            self.buf += text
            return "", self._calls()
        self.buf += text
        stripped = self.buf.lstrip()
        if not self.started and stripped:
            if stripped.startswith(OPEN) or (OPEN.startswith(stripped) and len(stripped) < len(OPEN)):
                if stripped.startswith(OPEN):
                    self.calling = True
                    self.buf = stripped
                    return "", self._calls()
                return "", []
            self.started = True
        out, self.buf = self.buf, ""
        return out, []

    def _calls(self) -> list[ToolCallDelta]:
        out: list[ToolCallDelta] = []
        while True:
            if self.args_at < 0:  # waiting for a call's head (after OPEN)
                block = self.buf.lstrip()
                if not block.startswith(OPEN):
                    if block and not OPEN.startswith(block):
                        raise BadRequest(f"the model produced a malformed tool call: {block[:80]!r}")
                    return out
                m = _HEAD.match(block, len(OPEN))
                if m is None:  # the grammar writes the head in one shape: a long miss is not a call
                    if len(block) > len(OPEN) + _MAX_HEAD:
                        raise BadRequest(f"the model produced a malformed tool call: {block[:80]!r}")
                    return out
                self.buf = block
                self.index += 1
                self.args_at = self.sent = m.end()
                name = json.loads(f'"{m.group(1)}"')
                out.append(ToolCallDelta(self.index, f"call_{uuid.uuid4().hex[:24]}", name, ""))
            end = _END.search(self.buf, self.sent)  # what was sent is not the end (it was never a `}` held)
            if end is None:
                hold = next((k for k in range(len(_TAIL) - 1, 0, -1) if self.buf.endswith(_TAIL[:k])), 0)
                if len(self.buf) - hold > self.sent:
                    out.append(ToolCallDelta(self.index, arguments=self.buf[self.sent : len(self.buf) - hold]))
                    self.sent = len(self.buf) - hold
                return out
            args = self.buf[self.args_at : end.start()]
            try:
                json.loads(args)
            except ValueError as e:
                raise BadRequest(f"the model produced a malformed tool call: {e}") from e
            if end.start() > self.sent:
                out.append(ToolCallDelta(self.index, arguments=self.buf[self.sent : end.start()]))
            self.buf, self.args_at, self.sent = self.buf[end.end() :], -1, 0

    def finish(self) -> tuple[str, int]:
        """The remaining text, and how many calls were made."""
        if not self.calling:
            out, self.buf = self.buf, ""
            return out, 0
        if self.args_at >= 0 or self.index < 0:  # cut off inside a call (max_tokens): it cannot be completed
            raise BadRequest("the answer ended inside a tool call (raise max_tokens)", code="length")
        return "", self.index + 1

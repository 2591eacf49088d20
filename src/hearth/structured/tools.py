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
# A plain answer may not open with "<", "{", "[", a code fence or blank space: small models that mean to call
# a tool otherwise write the call as bare or fenced JSON.
PLAIN_ANSWER = r"[^<{`\[ \t\n\x00] [^\x00]*"


def _functions(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(tools) > MAX_TOOLS:
        raise BadRequest(f"tools: {len(tools)} tools, more than the {MAX_TOOLS} a request may offer", param="tools")
    out = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if t.get("type", "function") != "function" or not isinstance(fn, dict) or not fn.get("name"):
            raise BadRequest(f"tools.{i}: each tool must be {{'type': 'function', 'function': {{'name': ...}}}}",
                             param=f"tools.{i}")  # fmt: skip
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
                     param="tool_choice")  # fmt: skip


def tool_grammar(tools: list[dict[str, Any]], tool_choice: Any, parallel: bool = True,
                 max_calls: int | None = None) -> str | None:  # fmt: skip
    """`max_calls` bounds parallel calls (a token budget pays for each); None: any number."""
    from hearth.structured.bounds import BoundedConverter, strict_chars

    mode, only = tool_mode(tool_choice)
    if mode == "none":  # enforced, not requested: the answer may not even look like a call
        return f"root ::= {PLAIN_ANSWER}\n"
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
                                         f"{conv._format_literal(chr(10) + CLOSE)}")  # fmt: skip
    if not parallel or max_calls == 1:
        calls = block
    elif max_calls is None:
        calls = f'{block} ("\\n" {block})*'
    else:
        calls = block + "".join(f' ("\\n" {block}' for _ in range(max_calls - 1)) + ")?" * (max_calls - 1)
    if mode == "auto":
        answer = conv._add_rule("answer", PLAIN_ANSWER)
        conv._add_rule("root", f"{calls} | {answer}")
    else:
        conv._add_rule("root", calls)
    return strict_chars(str(conv.format_grammar()))


_BLOCK = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.DOTALL)


class ToolCallParser:
    """Splits a local model's output stream into text and tool calls.

    Text passes through at once, except a possible start of `<tool_call>` which is held until it is
    decided. Once a tool call starts, the rest is collected and parsed at the end.
    """

    def __init__(self) -> None:
        self.buf = ""
        self.calling = False
        self.started = False

    def feed(self, text: str) -> str:
        """Returns the text that can be shown now."""
        if self.calling:
            self.buf += text
            return ""
        self.buf += text
        stripped = self.buf.lstrip()
        if not self.started and stripped:
            if stripped.startswith(OPEN) or (OPEN.startswith(stripped) and len(stripped) < len(OPEN)):
                if stripped.startswith(OPEN):
                    self.calling = True
                return ""
            self.started = True
        out, self.buf = self.buf, ""
        return out

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        """Remaining text, and the parsed calls (arguments as JSON text)."""
        if not self.calling:
            out, self.buf = self.buf, ""
            return out, []
        calls = []
        for i, m in enumerate(_BLOCK.finditer(self.buf)):
            try:
                obj = json.loads(m.group(1))
                name, args = obj["name"], obj.get("arguments", {})
            except (ValueError, KeyError, TypeError) as e:
                raise BadRequest(f"the model produced a malformed tool call: {e}") from e
            text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            calls.append(ToolCallDelta(i, f"call_{uuid.uuid4().hex[:24]}", str(name), text))
        if not calls:  # cut off inside the first call (max_tokens): nothing valid to return
            raise BadRequest("the answer ended inside a tool call (raise max_tokens)", code="length")
        return "", calls

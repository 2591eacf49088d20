"""The body of `POST /v1/responses` and how its items become hearth's messages and back.

Input items are messages (`input_text`, `input_image`, `output_text` parts), `function_call` and
`function_call_output`; `reasoning` items from an earlier answer are skipped. Tools are flat
(`{"type": "function", "name", "parameters"}`) where chat completions nest them under `function`;
`text.format` is chat's `response_format`. Fields that select a feature hearth does not have (server tools,
background mode, stored prompts, conversations objects) are refused by name, never ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hearth.api.options import HearthOptions
from hearth.api.schemas import MAX_MESSAGES, _Body
from hearth.core.errors import BadRequest
from hearth.core.types import Message, ToolCall


class Item(BaseModel):
    """An input item; which fields it needs depends on its type, checked when it is read."""

    model_config = ConfigDict(extra="allow")
    type: str | None = None
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[dict[str, Any]] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[dict[str, Any]] | None = None
    id: str | None = None


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = Field(None, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextOptions(_Body):
    format: dict[str, Any] | None = None
    verbosity: str | None = None


class ResponsesBody(_Body):
    model: str
    input: str | Annotated[list[Item], Field(max_length=MAX_MESSAGES)]
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = Field(None, max_length=200)
    metadata: dict[str, str] | None = None
    user: str | None = None
    reasoning: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    stream_options: dict[str, Any] | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = Field(None, ge=0)
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    hearth: HearthOptions | None = None

    def refuse_unsupported(self) -> None:
        if self.background:
            raise BadRequest("background: responses run in the foreground here", param="background")
        if self.conversation is not None:
            raise BadRequest("conversation: not supported; chain turns with previous_response_id",
                             param="conversation")
        if self.prompt is not None:
            raise BadRequest("prompt: stored prompt templates are not supported; send instructions", param="prompt")
        if self.top_logprobs:
            raise BadRequest("top_logprobs: not supported", param="top_logprobs")


def _parts_text(parts: list[dict[str, Any]], where: str) -> tuple[str, list[str]]:
    texts: list[str] = []
    images: list[str] = []
    for j, p in enumerate(parts):
        kind = p.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text"):
            texts.append(str(p.get("text") or ""))
        elif kind == "refusal":
            texts.append(str(p.get("refusal") or ""))
        elif kind == "input_image":
            url = p.get("image_url")
            if not isinstance(url, str) or not url:
                raise BadRequest(f"{where}.{j}: input_image needs an image_url (file_id is not supported)",
                                 param=f"{where}.{j}")
            images.append(url)
        else:
            raise BadRequest(f"{where}.{j}: content part type {kind!r} is not supported", param=f"{where}.{j}")
    return "".join(texts), images


def to_messages(items: str | list[Item]) -> list[Message]:
    """Input items as hearth's messages; consecutive function calls join the assistant turn before them."""
    if isinstance(items, str):
        return [Message("user", items)]
    out: list[Message] = []
    for i, it in enumerate(items):
        kind = it.type or ("message" if it.role else None)
        where = f"input.{i}"
        if kind == "message":
            if it.role is None:
                raise BadRequest(f"{where}.role: field required", param=f"{where}.role")
            if isinstance(it.content, list):
                text, images = _parts_text(it.content, f"{where}.content")
            else:
                text, images = it.content or "", []
            out.append(Message(it.role, text, images=images or None))
        elif kind == "function_call":
            if not it.call_id or not it.name:
                raise BadRequest(f"{where}: a function_call needs a call_id and a name", param=where)
            call = ToolCall(it.call_id, it.name, it.arguments or "{}")
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                out.append(Message("assistant", "", tool_calls=[call]))
        elif kind == "function_call_output":
            if not it.call_id:
                raise BadRequest(f"{where}.call_id: field required", param=f"{where}.call_id")
            output = it.output if isinstance(it.output, str) else _parts_text(it.output or [], f"{where}.output")[0]
            out.append(Message("tool", output, tool_call_id=it.call_id))
        elif kind == "reasoning":
            continue  # an earlier answer's reasoning: not read back
        else:
            raise BadRequest(f"{where}.type: item type {kind!r} is not supported", param=f"{where}.type")
    return out


def chat_tools(tools: list[FunctionTool] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    out = []
    for i, t in enumerate(tools):
        if t.type != "function" or not t.name:
            raise BadRequest(f"tools.{i}: only function tools (with a name) are supported, not {t.type!r}",
                             param=f"tools.{i}")
        fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters or {"type": "object", "properties": {}}}
        if t.description:
            fn["description"] = t.description
        if t.strict is not None:
            fn["strict"] = t.strict
        out.append({"type": "function", "function": fn})
    return out


def chat_tool_choice(choice: str | dict[str, Any] | None) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise BadRequest("tool_choice: auto, none, required or {\"type\": \"function\", \"name\": ...}",
                     param="tool_choice")


def response_format(text: TextOptions | None) -> dict[str, Any] | None:
    fmt = text.format if text is not None else None
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    raise BadRequest("text.format: text, json_object or json_schema (with a schema)", param="text.format")


# --- stored conversations -----------------------------------------------------------------------------


def dump_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [[c.id, c.name, c.arguments] for c in m.tool_calls]
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        if m.images:
            d["images"] = m.images
        out.append(d)
    return out


def load_messages(rows: list[dict[str, Any]]) -> list[Message]:
    return [
        Message(d["role"], d["content"], tool_calls=[ToolCall(*c) for c in d["tool_calls"]] if d.get("tool_calls")
                else None, tool_call_id=d.get("tool_call_id"), images=d.get("images"))
        for d in rows
    ]

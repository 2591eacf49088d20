"""Request bodies of both APIs, read by orjson and validated by pydantic.

Unknown fields are rejected with the field's name (a typo like `max_token` would otherwise be
ignored silently and the user would wonder why the answer is so long). Fields that OpenAI defines
but hearth does not act on are accepted and listed, so standard clients never break.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearth.api.common import read_body
from hearth.api.options import HearthOptions
from hearth.core.errors import BadRequest
from hearth.core.work import offload

# Messages in one request: every stage walks them (intent, memory, the cache key, the template), so their
# number is bounded apart from the body's bytes.
MAX_MESSAGES = 10_000
# Stop strings are matched against the text at every token, on the engine's thread; biases are applied to
# every token's logits: both are bounded (OpenAI allows 4 stops and 300 biases).
MAX_STOPS, MAX_STOP_CHARS, MAX_LOGIT_BIAS = 16, 500, 300
MAX_INPUTS = 2048  # texts in one embeddings request, as OpenAI allows
E = TypeVar("E")
Inputs = Annotated[list[E], Field(max_length=MAX_INPUTS)]
StopText = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
Stop = StopText | Annotated[list[StopText], Field(max_length=MAX_STOPS)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


T = TypeVar("T", bound=BaseModel)


# --- OpenAI ---------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    image_url: Any = None


class FunctionCall(BaseModel):
    name: str
    arguments: str = ""


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = ""
    type: str = "function"
    function: FunctionCall


class OpenAIMessage(_Body):
    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    function_call: Any = None
    audio: Any = None
    reasoning_content: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _OpenAISampling(_Body):
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1)
    stop: Stop | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = Field(None, max_length=MAX_LOGIT_BIAS)
    logprobs: bool | int | None = None
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # llama.cpp / vLLM extensions that OpenAI-style clients send through extra_body
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    repeat_penalty: float | None = Field(None, gt=0)
    hearth: HearthOptions | None = None


class ChatCompletionBody(_OpenAISampling):
    model: str
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: Any = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    prediction: Any = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Extensions of Qwen (DashScope), DeepSeek, GLM, Moonshot, Doubao and vLLM that clients send through
    # extra_body: forwarded to providers that take them; local models honour the thinking switch.
    enable_thinking: bool | None = None
    thinking: dict[str, Any] | bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None


class CompletionBody(_OpenAISampling):
    model: str
    prompt: str | list[str]
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None


# --- Ollama ---------------------------------------------------------------------------------------

# Options Ollama accepts; the runtime ones (GPU, threads, mmap...) are accepted and ignored, since
# hearth's engine is configured once in hearth's config.
_OLLAMA_IGNORED_OPTIONS = {
    "num_keep", "typical_p", "repeat_last_n", "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta",
    "penalize_newline", "numa", "num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "vocab_only",
    "use_mmap", "use_mlock", "num_thread", "f16_kv", "logits_all", "embedding_only", "rope_frequency_base",
    "rope_frequency_scale",
}


class OllamaOptions(_Body):
    model_config = ConfigDict(extra="forbid")
    num_predict: int | None = None
    temperature: float | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=0)
    top_p: float | None = Field(None, ge=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    stop: Stop | None = None
    seed: int | None = None
    repeat_penalty: float | None = Field(None, gt=0)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class OllamaToolCallFn(BaseModel):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class OllamaToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    function: OllamaToolCallFn


class OllamaMessage(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class _OllamaCommon(_Body):
    model: str
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    keep_alive: str | int | float | None = None
    think: bool | str | None = None
    hearth: HearthOptions | None = None


class OllamaChatBody(_OllamaCommon):
    messages: list[OllamaMessage] = Field(default_factory=list, max_length=MAX_MESSAGES)
    tools: list[dict[str, Any]] | None = None


class OllamaGenerateBody(_OllamaCommon):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class OllamaShowBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    name: str | None = None  # older clients
    verbose: bool | None = None


class PullBody(BaseModel):  # Ollama's model management (api/models.py)
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    name: str | None = None  # older clients
    stream: bool = True
    insecure: bool | None = None


class DeleteBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    name: str | None = None


class CopyBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    source: str
    destination: str


class AdapterBody(_Body):  # POST /admin/adapters
    name: str = Field(min_length=1, max_length=100)
    path: str = Field(min_length=1, description="the adapter's GGUF file, on the gateway's machine")
    base: str | None = Field(None, description="the local model it was trained on; default: the only local model")
    scale: float = Field(1.0, ge=-100, le=100)


class EmbeddingsBody(_Body):
    model: str
    input: str | Inputs[str] | Inputs[int] | Inputs[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None
    # An extension (as Cohere and Voyage name it): asymmetric models such as e5 embed queries apart from
    # documents. Left out: documents.
    input_type: Literal["query", "document"] | None = None


class OllamaEmbedBody(_Body):
    model: str
    input: str | Inputs[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)
    options: dict[str, Any] | None = None
    keep_alive: Any = None


class OllamaEmbeddingsBody(_Body):  # the deprecated /api/embeddings
    model: str
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: Any = None


def ollama_options(raw: dict[str, Any] | None) -> OllamaOptions:
    raw = {k: v for k, v in (raw or {}).items() if k not in _OLLAMA_IGNORED_OPTIONS}
    return parse(OllamaOptions, raw, prefix="options.")


# Union branch tags pydantic puts in an error's location ("str", "list[str]", "function-after[...]").
_BRANCH = re.compile(r"^(function-after|constrained-str|str$|int$|list\[|dict\[)")


def parse(cls: type[T], data: bytes | dict[str, Any], prefix: str = "") -> T:
    """Validate, turning the first pydantic error into a BadRequest that names the field.

    Bytes are read by orjson first: integers beyond 64 bits become floats there (and 1e400 is refused), so no
    client value can later fail to serialize on its way to a provider, a cache key or a log line."""
    if isinstance(data, bytes):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise BadRequest(f"malformed JSON body: {e}") from None
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        errors = e.errors()
        # A union (str or a list) reports one error per branch: the bound that was hit says the most.
        err = next((x for x in errors if x["type"] in ("too_long", "too_short")), errors[0])
        if err["type"] == "model_type" and not err["loc"]:
            raise BadRequest("the request body must be a JSON object") from None
        loc = prefix + ".".join(str(p) for p in err["loc"] if not _BRANCH.match(str(p)))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "int_parsing_size":
            msg = "integer too large"
        elif err["type"] == "missing":
            msg = "field required"
        raise BadRequest(f"{loc}: {msg}", param=loc or None) from None


# Bodies up to this size are parsed on the event loop (about 17 ms at 1 MB): a thread would only trade the wait
# for a fight over the GIL, which measured worse for /health under six 400 KB bodies at once.
PARSE_ON_LOOP = 1024 * 1024


async def read_parsed(request: web.Request, cls: type[T]) -> T:
    """The request's body, read within its limits and validated; a large one off the event loop (orjson and
    pydantic take 130 ms over 8 MB of tiny messages, which /health and every other request would wait for)."""
    raw = await read_body(request)
    if len(raw) > PARSE_ON_LOOP:
        return await offload(functools.partial(parse, cls, raw), size=len(raw))
    return parse(cls, raw)

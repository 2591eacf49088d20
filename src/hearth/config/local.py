"""Local models as a whole: where pulled models and adapters live, how long models stay loaded, how many fit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from hearth.config.keep_alive import parse_keep_alive
from hearth.core.errors import BadRequest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def home_dir() -> Path:
    return Path(os.environ.get("HEARTH_HOME") or Path.home() / ".cache" / "hearth")


def _duration(v: object) -> object:
    try:
        parse_keep_alive(v)
    except BadRequest as e:
        raise ValueError(e.message.removeprefix("keep_alive: ")) from None
    return v


# Ollama's keep_alive as the config takes it ("5m", seconds, -1 forever, 0), checked when the file loads.
KeepAlive = Annotated[str | float, BeforeValidator(_duration)]


class AdapterConfig(_Strict):
    """A LoRA adapter (GGUF) served on a local model: requested as `<base>+<name>`, or by an alias."""

    base: str = Field(description="the local model (llamacpp) it was trained on")
    path: str = Field(description="the adapter's GGUF file")
    scale: float = Field(1.0, description="how strongly it applies (llama.cpp's LoRA scale)")
    aliases: list[str] = Field(default_factory=list, description="names that request the base with this adapter")


class LocalConfig(_Strict):
    """Local models as a whole: where pulled models live, how long they stay loaded, how many fit."""

    models_dir: str | None = Field(None, description="pulled models (blobs and manifests); default $HEARTH_HOME/models")
    keep_alive: KeepAlive = Field("5m", description="default keep-alive of models loaded on demand (Ollama's)")
    max_loaded_models: int = Field(3, ge=1, description="local chat models in memory at once")
    max_loaded_bytes: int | None = Field(
        None, ge=1, description="bytes (weights + KV cache) of the loaded local models together; the least "
        "recently used idle model is unloaded to make room. Default: 75% of this machine's memory")
    load_timeout: float = Field(60.0, gt=0, description="seconds a request waits for room to load its model (503)")
    hub_endpoint: str | None = Field(None, description="Hugging Face Hub or mirror; default $HF_ENDPOINT, else "
                                     "https://huggingface.co")
    hub_token_env: str = Field("HF_TOKEN", description="the environment variable holding the Hub token (gated "
                               "repositories); the token itself never goes in this file")
    n_ctx: int = Field(4096, ge=64, description="context of pulled models (capped at what each model was trained on)")
    adapters: dict[str, AdapterConfig] = Field(default_factory=dict, description="LoRA adapters served from start "
                                               "(more can be added at run time: hearth adapter add, POST "
                                               "/admin/adapters)")

    def root(self) -> Path:
        return Path(self.models_dir).expanduser() if self.models_dir else home_dir() / "models"

    def budget_bytes(self) -> int:
        if self.max_loaded_bytes is not None:
            return self.max_loaded_bytes
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.75)
        except (ValueError, OSError, AttributeError):
            return 8 << 30

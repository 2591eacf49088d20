"""All configuration in one typed place: a YAML file, then `HEARTH_*` environment overrides.

With no file at all the defaults serve the built-in local model under its short name and the alias
`local`. Validation errors name the file, the line and the field, because a gateway that refuses to
start must say exactly why.

The package is split by job, because one module doing five of them made each hard to find and to test:
schema.py holds the sections and `Config`, models.py the entries of `models:` by kind (local.py the `local:` section:
pulled models, keep-alive, the memory budget, adapters); load.py turns a file into a
`Config` (YAML line recording, `${VAR}` interpolation, error messages); env.py applies `HEARTH_*`
overrides; checks.py checks references between models; describe.py prints the summary of
`hearth config check`. Import from `hearth.config`, which re-exports every public name; the modules are
an internal layout.
"""

from __future__ import annotations

from hearth.config.checks import check_references
from hearth.config.describe import describe_config
from hearth.config.load import ConfigError, load_config
from hearth.config.local import AdapterConfig, LocalConfig, home_dir
from hearth.config.models import (
    DEFAULT_FALLBACK_ON,
    BreakerConfig,
    EmbeddingModel,
    EscalationConfig,
    FallbackCriterion,
    IntentLabel,
    LocalModel,
    ModelConfig,
    OllamaModel,
    OpenAIModel,
    PluginModel,
    RemoteModel,
    RouterModel,
    RuleConfig,
    TierConfig,
    Timeouts,
)
from hearth.config.schema import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_MODEL_NAME,
    DEFAULT_PORT,
    CacheConfig,
    Config,
    ConversationConfig,
    KeysConfig,
    ObserveConfig,
    Price,
    QualityConfig,
    RagConfig,
    RagProfile,
    SemanticCacheConfig,
    ServerConfig,
    multilingual_embedder_available,
)

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_FALLBACK_ON",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PORT",
    "AdapterConfig",
    "BreakerConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "ConversationConfig",
    "EmbeddingModel",
    "EscalationConfig",
    "FallbackCriterion",
    "IntentLabel",
    "KeysConfig",
    "LocalConfig",
    "LocalModel",
    "ModelConfig",
    "ObserveConfig",
    "OllamaModel",
    "OpenAIModel",
    "PluginModel",
    "Price",
    "QualityConfig",
    "RagConfig",
    "RagProfile",
    "RemoteModel",
    "RouterModel",
    "RuleConfig",
    "SemanticCacheConfig",
    "ServerConfig",
    "TierConfig",
    "Timeouts",
    "check_references",
    "describe_config",
    "home_dir",
    "load_config",
    "multilingual_embedder_available",
]

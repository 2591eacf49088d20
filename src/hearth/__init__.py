"""hearth: a local-first LLM gateway.

Importing this package is deliberately cheap: the HTTP server, the engine and llama.cpp are imported
only by the code paths that need them.
"""

__version__ = "0.1.0"

"""A video storyboard generator on hearth's JSON-schema output.

A video platform asks a local model for a storyboard as JSON. Without constraints a small model's
JSON needs a parser, a validator, a repair step and a fallback; with `response_format: json_schema`
hearth constrains the local model's decoding to the schema, so the answer always parses and matches.

    bash scripts/serve.sh &                                  # the gateway on the default model
    .venv/bin/python examples/storyboard.py "a cat learning to surf"
"""

from __future__ import annotations

import json
import sys
from typing import Any

from openai import OpenAI

SHOTS = ["wide", "medium", "close-up", "over-the-shoulder", "aerial", "tracking"]

STORYBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "scenes": {
            "type": "array",
            "minItems": 3,
            "maxItems": 6,
            "items": {
                "type": "object",
                "properties": {
                    "number": {"type": "integer", "minimum": 1, "maximum": 6},
                    "description": {"type": "string", "maxLength": 160},
                    "duration": {"type": "integer", "minimum": 3, "maximum": 8},
                    "shot": {"type": "string", "enum": SHOTS},
                    "action": {"type": "string", "maxLength": 120},
                },
                "required": ["number", "description", "duration", "shot", "action"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["title", "scenes"],
    "additionalProperties": False,
}


def storyboard(topic: str, base_url: str = "http://127.0.0.1:8434/v1", model: str = "local") -> dict[str, Any]:
    client = OpenAI(base_url=base_url, api_key="unused", timeout=300)
    r = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "system",
                "content": "You write short video storyboards as JSON. Each scene lasts 3 to 8 "
                f"seconds and uses one camera shot: {', '.join(SHOTS)}.",
            },
            {"role": "user", "content": f"Storyboard for a short video about {topic}, with 3 to 5 scenes."},
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "storyboard", "schema": STORYBOARD_SCHEMA, "strict": True},
        },
        temperature=0,
        max_tokens=900,
    )
    board: dict[str, Any] = json.loads(r.choices[0].message.content or "")  # valid by construction
    board["total_duration"] = sum(s["duration"] for s in board["scenes"])  # computed, not generated
    return board


if __name__ == "__main__":
    print(json.dumps(storyboard(" ".join(sys.argv[1:]) or "a cat learning to surf"), ensure_ascii=False, indent=2))

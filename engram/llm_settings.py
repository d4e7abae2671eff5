"""Which OpenAI-compatible endpoint the worker talks to, from the environment or flags."""

from __future__ import annotations

import argparse
import os

from engram.activities.llm_stream import LLMEndpoint

OLLAMA_URL = "http://localhost:11434/v1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LLM")
    group.add_argument(
        "--llm-base-url",
        default=os.environ.get("ENGRAM_LLM_BASE_URL")
        or os.environ.get("OPENAI_BASE_URL")
        or OLLAMA_URL,
        help="OpenAI-compatible endpoint (ENGRAM_LLM_BASE_URL, else OPENAI_BASE_URL, else Ollama)",
    )
    group.add_argument(
        "--llm-timeout",
        type=float,
        default=float(os.environ.get("ENGRAM_LLM_TIMEOUT", "60")),
        help="seconds to wait for the endpoint to answer or send the next token",
    )


def endpoint_from_args(args: argparse.Namespace) -> LLMEndpoint:
    # The key is only ever read from the environment, never from a flag.
    key = os.environ.get("ENGRAM_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY", "")
    return LLMEndpoint(base_url=args.llm_base_url, api_key=key, timeout=args.llm_timeout)

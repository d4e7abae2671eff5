"""Which OpenAI-compatible endpoint the worker talks to, from flags or the environment."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

OLLAMA_URL = "http://localhost:11434/v1"


@dataclass(frozen=True)
class LLMEndpoint:
    """Where the worker's LLM activities send their requests."""

    base_url: str
    # Read from the worker's environment; never part of an activity input or a log line.
    api_key: str = field(default="", repr=False)
    timeout: float = 60.0
    # For a single-model server (the local fallback): every agent's turns go to this model.
    serve_every_model_as: str = ""
    # How a reply cut off by a crash is resumed: "off" (regenerated from the start, the client
    # told to discard what it was shown), "prefill" (the partial reply is sent as the start of
    # the assistant message, which the server continues: llama.cpp's server, Ollama) or "vllm"
    # (the same, with vLLM's continue_final_message).
    continuation: str = "off"


CONTINUATIONS = ("off", "prefill", "vllm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LLM")
    group.add_argument(
        "--llm-base-url",
        default=None,
        help="OpenAI-compatible endpoint (default: ENGRAM_LLM_BASE_URL, else OPENAI_BASE_URL, "
        "else Ollama's; `engram dev` falls back to its local model when Ollama is not running)",
    )
    group.add_argument(
        "--llm-timeout",
        type=float,
        default=float(os.environ.get("ENGRAM_LLM_TIMEOUT", "60")),
        help="seconds to wait for the endpoint to answer or send the next token",
    )
    group.add_argument(
        "--llm-continuation",
        choices=CONTINUATIONS,
        default=os.environ.get("ENGRAM_LLM_CONTINUATION", "off"),
        help="resume a reply cut off by a crash from where it stopped, if the endpoint can "
        "continue a partial assistant message: prefill (llama.cpp server, Ollama) or vllm; "
        "off regenerates it (default: ENGRAM_LLM_CONTINUATION, else off)",
    )
    group.add_argument(
        "--prices",
        default=os.environ.get("ENGRAM_PRICES") or None,
        help="a TOML or JSON price table (USD per million tokens per model) replacing the "
        "shipped one, engram/prices/default-2026-12.toml (default: ENGRAM_PRICES)",
    )


def configured_base_url(args: argparse.Namespace) -> str | None:
    """The endpoint the user asked for, if any."""
    return (
        args.llm_base_url
        or os.environ.get("ENGRAM_LLM_BASE_URL")
        or os.environ.get("OPENAI_BASE_URL")
        or None
    )


def endpoint_from_args(
    args: argparse.Namespace, base_url: str | None = None, serve_every_model_as: str = ""
) -> LLMEndpoint:
    # The key is only ever read from the environment, never from a flag.
    key = os.environ.get("ENGRAM_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY", "")
    return LLMEndpoint(
        base_url=base_url or configured_base_url(args) or OLLAMA_URL,
        api_key=key,
        timeout=args.llm_timeout,
        serve_every_model_as=serve_every_model_as,
        continuation=args.llm_continuation,
    )

"""Which OpenAI-compatible endpoint the worker talks to, from flags or the environment."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
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
    # "" for the default endpoint; else the NAME of `--llm-endpoint NAME=URL`.
    name: str = ""


CONTINUATIONS = ("off", "prefill", "vllm")
# An endpoint's name is also part of an environment variable's (ENGRAM_LLM_<NAME>_API_KEY).
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class LLMEndpoints:
    """The default endpoint, the named ones a model may pick (`NAME/model`), and how the worker
    fails over between them."""

    default: LLMEndpoint
    named: Mapping[str, LLMEndpoint] = field(default_factory=dict)
    # Consecutive failures that open an endpoint's circuit, and seconds before it is tried again.
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0
    # A Retry-After longer than this (429/529), with no fallback that can serve, has the agent
    # wait on a durable timer instead of holding a retrying activity.
    quota_wait_after: float = 10.0

    def route(self, model: str) -> tuple[LLMEndpoint, str]:
        """The endpoint a model name picks, and the model's name there. Only a configured NAME
        is a prefix: `meta-llama/Llama-3` stays a bare model on the default endpoint."""
        prefix, slash, rest = model.partition("/")
        endpoint = self.named.get(prefix) if slash and rest else None
        if endpoint is None:
            return self.default, model
        return endpoint, rest


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
        "--llm-endpoint",
        action="append",
        default=None,
        metavar="NAME=URL",
        help="another OpenAI-compatible endpoint, picked by a model named NAME/model; its key is "
        "ENGRAM_LLM_<NAME>_API_KEY (repeatable; default: ENGRAM_LLM_ENDPOINTS, NAME=URL,...)",
    )
    group.add_argument(
        "--llm-endpoint-continuation",
        action="append",
        default=[],
        metavar="NAME=MODE",
        help="a named endpoint's continuation mode (off, prefill, vllm; default: "
        "ENGRAM_LLM_<NAME>_CONTINUATION, else off)",
    )
    group.add_argument(
        "--llm-breaker-failures",
        type=int,
        default=int(os.environ.get("ENGRAM_LLM_BREAKER_FAILURES", "3")),
        help="consecutive failures after which an endpoint is skipped for its fallbacks",
    )
    group.add_argument(
        "--llm-breaker-cooldown",
        type=float,
        default=float(os.environ.get("ENGRAM_LLM_BREAKER_COOLDOWN", "30")),
        help="seconds an endpoint is skipped before one request probes it again",
    )
    group.add_argument(
        "--llm-quota-wait-after",
        type=float,
        default=float(os.environ.get("ENGRAM_LLM_QUOTA_WAIT_AFTER", "10")),
        help="a rate limit asking to wait longer than this many seconds, with no fallback, has "
        "the agent wait on a durable timer (status waiting_for_quota)",
    )
    group.add_argument(
        "--prices",
        default=os.environ.get("ENGRAM_PRICES") or None,
        help="a TOML or JSON price table (USD per million tokens per model) replacing the "
        "shipped one, engram/prices/default-2026-12.toml (default: ENGRAM_PRICES)",
    )
    group.add_argument(
        "--tenant-daily-budget-usd",
        type=float,
        default=float(os.environ.get("ENGRAM_TENANT_DAILY_BUDGET_USD") or 0),
        metavar="USD",
        help="the daily budget (UTC days) of a tenant without one of its own (`engram keys "
        "budget`); 0: none (default: ENGRAM_TENANT_DAILY_BUDGET_USD or 0)",
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


def endpoints_from_args(args: argparse.Namespace, default: LLMEndpoint) -> LLMEndpoints:
    """The default endpoint with the named ones of `--llm-endpoint` (or ENGRAM_LLM_ENDPOINTS)."""
    given = args.llm_endpoint
    if given is None:
        given = [p for p in os.environ.get("ENGRAM_LLM_ENDPOINTS", "").split(",") if p.strip()]
    modes = dict(_pair(p, "--llm-endpoint-continuation") for p in args.llm_endpoint_continuation)
    named: dict[str, LLMEndpoint] = {}
    for pair in given:
        name, url = _pair(pair, "--llm-endpoint")
        env = f"ENGRAM_LLM_{name.upper().replace('-', '_')}_"
        mode = modes.get(name) or os.environ.get(env + "CONTINUATION", "off")
        if mode not in CONTINUATIONS:
            raise SystemExit(f"endpoint {name}: continuation must be one of {CONTINUATIONS}")
        named[name] = LLMEndpoint(
            base_url=url,
            api_key=os.environ.get(env + "API_KEY", ""),
            timeout=default.timeout,
            continuation=mode,
            name=name,
        )
    unknown = set(modes) - set(named)
    if unknown:
        raise SystemExit(f"--llm-endpoint-continuation names no endpoint: {sorted(unknown)}")
    return LLMEndpoints(
        default=default,
        named=named,
        breaker_failures=max(1, args.llm_breaker_failures),
        breaker_cooldown=args.llm_breaker_cooldown,
        quota_wait_after=args.llm_quota_wait_after,
    )


def _pair(text: str, flag: str) -> tuple[str, str]:
    name, eq, value = text.strip().partition("=")
    name, value = name.strip(), value.strip()
    if not eq or not NAME.match(name) or not value:
        raise SystemExit(f"{flag} takes NAME=VALUE, NAME a letter then letters, digits, _ or -")
    return name, value

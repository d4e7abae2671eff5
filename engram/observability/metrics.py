"""Engram's Prometheus metrics, each defined once, and the helpers that record them.

Everything lives in prometheus_client's default registry, so `engram dev` (gateway and worker in
one process) serves one `/metrics` for both. Recording is always on and cheap; `serve` decides
whether anyone can scrape it. Label values are bounded sets (outcomes, error codes, the tools a
worker knows), never ids or content.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import start_http_server as _start_http_server

from engram.v1 import agent_pb2
from engram.vocabulary import ErrorCode, TurnOutcome

# No `*_created` series beside every counter and histogram: noise on dashboards, and Prometheus
# does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

# Latencies an interactive client feels: from a few milliseconds to a minute.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Whole turns: a quick answer, a long generation, tool calls, an autonomous run of an hour.
_TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
# Worker to gateway, usually a few milliseconds on one network.
_RELAY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# `engram_turns_failed_total{code}` for a turn whose Chat stream ended before the turn did: the
# client went away (the turn itself goes on in its workflow), or the gateway failed.
STREAM_CLOSED = "STREAM_CLOSED"
GATEWAY_ERROR = "GATEWAY_ERROR"
# `engram_tool_calls_total{tool}` for a name no tool of this worker has (the model made it up).
UNKNOWN_TOOL = "(unknown)"


class ToolOutcome(StrEnum):
    """`engram_tool_calls_total{outcome}`: how one attempt at a tool call ended."""

    OK = "ok"
    """The tool answered."""
    ERROR = "error"
    """The model got an error result (bad arguments, a refusal, a failure after the last try)."""
    RETRYING = "retrying"
    """The attempt failed; Temporal tries again."""
    FAILED = "failed"
    """The activity failed for good (not a call any tool could answer)."""
    CANCELLED = "cancelled"
    """The turn was cancelled while the tool ran."""


TURNS_STARTED = Counter(
    "engram_turns_started_total", "Turns a gateway's Chat streams began to serve."
)
TURNS_COMPLETED = Counter(
    "engram_turns_completed_total",
    "Turns served to their end: outcome completed (a final answer) or cancelled.",
    ["outcome"],
)
TURNS_FAILED = Counter(
    "engram_turns_failed_total",
    "Turns that ended with an error (code: the turn's error code), or whose Chat stream ended "
    f"first ({STREAM_CLOSED}, {GATEWAY_ERROR}).",
    ["code"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "engram_time_to_first_token_seconds",
    "From a user input arriving at the gateway to the turn's first text message sent back.",
    buckets=_LATENCY_BUCKETS,
)
TURN_DURATION = Histogram(
    "engram_turn_duration_seconds",
    "From a user input arriving at the gateway to its final answer or error sent back.",
    ["outcome"],
    buckets=_TURN_BUCKETS,
)
CHAT_STREAMS = Gauge("engram_chat_streams_active", "Chat calls open on this gateway.")
RELAY_LAG = Histogram(
    "engram_relay_lag_seconds",
    "From a message's creation (its timestamp, on the worker) to its arrival at the gateway's "
    "TokenRelay. Across hosts this includes their clock difference.",
    buckets=_RELAY_BUCKETS,
)
LLM_TOKENS = Counter(
    "engram_llm_tokens_total",
    "Tokens the LLM endpoint reported using: direction in (prompt) or out (completion).",
    ["direction"],
)
LLM_ERRORS = Counter(
    "engram_llm_errors_total",
    "LLM calls that failed, per attempt, by the code the turn would report.",
    ["code"],
)
LLM_COST = Counter(
    "engram_llm_cost_usd_total",
    "USD the LLM calls cost, priced from the usage the endpoint reported (engram/prices), by the "
    "agent's tenant (empty with auth off) and model. increase(...[1d]) is a tenant's daily spend.",
    ["tenant", "model"],
)
LLM_EARLY_REQUESTS = Counter(
    "engram_llm_early_requests_total",
    "LLM requests sent while their turn's workflow task was being committed "
    "(engram/activities/early_start.py), by outcome: claimed (the activity took the response) "
    "or wasted (closed unread: the activity sent its own, or never came).",
    ["outcome"],
)
TOOL_CALLS = Counter(
    "engram_tool_calls_total",
    "Attempts at worker and MCP tool calls, by tool and outcome.",
    ["tool", "outcome"],
)


@dataclass
class TurnWatch:
    """One turn as a Chat stream serves it, from its input's arrival (`received`, a
    `time.monotonic()` reading) to its last message."""

    received: float
    # How the turn ended (a TurnOutcome, and the error code of a failed one); "" until it has.
    outcome: str = field(default="", init=False)
    code: str = field(default="", init=False)
    _first_text: bool = field(default=False, init=False)
    _ended: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        TURNS_STARTED.inc()

    def sent(self, message: agent_pb2.ServerMessage) -> None:
        """Note a message the stream just sent."""
        kind = message.WhichOneof("payload")
        if kind == "text" and not self._first_text:
            self._first_text = True
            TIME_TO_FIRST_TOKEN.observe(time.monotonic() - self.received)
        elif kind == "final_answer":
            self._end(TurnOutcome.COMPLETED)
        elif kind == "error":
            code = message.error.code
            if code == ErrorCode.CANCELLED:
                self._end(TurnOutcome.CANCELLED)
            else:
                self._end(TurnOutcome.FAILED, code or ErrorCode.LLM_ERROR)

    def close(self, error: BaseException | None = None) -> None:
        """The stream stopped serving the turn; `error` is why, if it broke."""
        if self._ended:
            return
        self._ended = True
        # A cancelled call (the client left) is no gateway failure.
        broke = isinstance(error, Exception)
        TURNS_FAILED.labels(code=GATEWAY_ERROR if broke else STREAM_CLOSED).inc()

    def _end(self, outcome: TurnOutcome, code: str = "") -> None:
        if self._ended:
            return
        self._ended = True
        self.outcome, self.code = outcome, code
        TURN_DURATION.labels(outcome=outcome).observe(time.monotonic() - self.received)
        if outcome == TurnOutcome.FAILED:
            TURNS_FAILED.labels(code=code).inc()
        else:
            TURNS_COMPLETED.labels(outcome=outcome).inc()


def relay_arrived(messages: Iterable[agent_pb2.ServerMessage]) -> None:
    """Messages a worker relayed just reached the gateway."""
    now = time.time()
    for message in messages:
        if message.HasField("timestamp"):
            RELAY_LAG.observe(max(0.0, now - message.timestamp.ToNanoseconds() / 1e9))


def llm_cost(tenant: str, model: str, usd: float) -> None:
    """What an LLM call cost. Models are the operator's configured few, not the client's words."""
    LLM_COST.labels(tenant=tenant, model=model).inc(usd)


def llm_usage(prompt_tokens: int | None, completion_tokens: int | None) -> None:
    """Tokens an LLM response reported using."""
    LLM_TOKENS.labels(direction="in").inc(prompt_tokens or 0)
    LLM_TOKENS.labels(direction="out").inc(completion_tokens or 0)


def llm_error(code: str) -> None:
    LLM_ERRORS.labels(code=code).inc()


def llm_early_request(outcome: str) -> None:
    LLM_EARLY_REQUESTS.labels(outcome=outcome).inc()


def tool_call(tool: str, outcome: str) -> None:
    TOOL_CALLS.labels(tool=tool, outcome=outcome).inc()


class MetricsServer:
    """The `/metrics` endpoint (prometheus_client's own HTTP server, on a thread of its own)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry = REGISTRY) -> None:
        self._server, self._thread = _start_http_server(port, addr=host, registry=registry)
        self.port = int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

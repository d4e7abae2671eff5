"""What the LLM activity reports: its turn, model, token counts and cost (to the activity's span,
its log lines and the token and cost counters), and its endpoint's errors."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from engram.observability import logs, metrics, tracing
from engram.prices import Usage

# The usage the endpoint reported for the activity's call (each activity runs in its own task,
# so each has its own).
_NONE = Usage()
_reported: ContextVar[Usage] = ContextVar("llm_usage", default=_NONE)  # frozen: safe to share


def call(agent_id: str, message_id: str, model: str) -> None:
    """An LLM call for `agent_id`'s turn `message_id` starts, with `model`. Inside the activity:
    the fields stay bound for the rest of its task."""
    logs.bind(agent_id=agent_id, message_id=message_id)
    tracing.annotate(agent_id=agent_id, message_id=message_id, model=model)
    _reported.set(_NONE)


def usage(reported: dict[str, Any]) -> None:
    """The endpoint's `usage` object for a response: the tokens it used."""
    found = Usage.reported(reported)
    _reported.set(found)
    metrics.llm_usage(found.prompt, found.completion)
    tracing.annotate(input_tokens=found.prompt, output_tokens=found.completion)


def reported() -> Usage:
    """The usage the current activity's call reported (all zero if it reported none)."""
    return _reported.get()


def cost(tenant: str, model: str, usd: float) -> None:
    """What the call cost, by the worker's price table."""
    metrics.llm_cost(tenant, model, usd)
    tracing.annotate(cost_usd=usd)


def error(code: str) -> None:
    """An attempt failed at the endpoint, with the code the turn would report."""
    metrics.llm_error(code)
    tracing.annotate(error_code=code)

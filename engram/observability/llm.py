"""What the LLM activity reports: its turn, model and token counts (to the activity's span, its log
lines and the token counters), and its endpoint's errors."""

from __future__ import annotations

from engram.observability import logs, metrics, tracing


def call(agent_id: str, message_id: str, model: str) -> None:
    """An LLM call for `agent_id`'s turn `message_id` starts, with `model`. Inside the activity:
    the fields stay bound for the rest of its task."""
    logs.bind(agent_id=agent_id, message_id=message_id)
    tracing.annotate(agent_id=agent_id, message_id=message_id, model=model)


def usage(prompt_tokens: int | None, completion_tokens: int | None) -> None:
    """The endpoint's count of the tokens a response used."""
    metrics.llm_usage(prompt_tokens, completion_tokens)
    tracing.annotate(input_tokens=prompt_tokens or 0, output_tokens=completion_tokens or 0)


def error(code: str) -> None:
    """An attempt failed at the endpoint, with the code the turn would report."""
    metrics.llm_error(code)
    tracing.annotate(error_code=code)

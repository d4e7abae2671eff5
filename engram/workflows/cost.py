"""What an agent's LLM calls cost, and its budget: kept per turn, per run and over its life.

The worker prices each call from the usage its endpoint reported (engram/prices) and returns the
cost with the call's result; here it is added up. An agent with `max_cost_usd` sends each call
the budget it has left: the worker quotes the call's worst case first (the prompt's estimated
tokens at the input price, `max_output_tokens` at the output price) and does not send a call that
could cross it. Its tenant's daily budget is held against the same worst case
(engram/activities/tenant_budget.py). Workflow code: deterministic, no I/O.
"""

from __future__ import annotations

import json

from engram.workflows.tokens import CHARS_PER_TOKEN
from engram.workflows.types import AgentState, LLMRequest, LLMResult, Turn

# The output a call is assumed to be able to use: requests set no max_tokens, so this is the
# quote's bound, not the endpoint's (a reply longer than this can still cross the budget).
DEFAULT_MAX_OUTPUT_TOKENS = 4096
# Framing each message costs beyond its text, as prompt.TOKENS_PER_MESSAGE counts it.
TOKENS_PER_MESSAGE = 4
# A UTC day: tenants' daily budgets start again at its midnight (epoch time has no leap seconds).
DAY_SECONDS = 86_400


def budget_left(state: AgentState) -> float | None:
    """USD the agent may still spend; None without a budget."""
    budget = state.spec.settings.max_cost_usd
    if not budget:
        return None
    return max(0.0, budget - state.cost_usd)


def budgeted(request: LLMRequest, state: AgentState) -> LLMRequest:
    """`request`, carrying what the agent may still spend."""
    request.budget_usd = budget_left(state)
    request.max_output_tokens = DEFAULT_MAX_OUTPUT_TOKENS if request.budget_usd is not None else 0
    return request


def spent(state: AgentState, turn: Turn, result: LLMResult) -> None:
    """Add what a call cost to its turn, its run (if any) and the agent's life."""
    if not result.cost_usd:
        return
    turn.cost_usd += result.cost_usd
    if state.run is not None:
        state.run.cost_usd += result.cost_usd
    state.cost_usd += result.cost_usd


def estimated_input_tokens(request: LLMRequest) -> int:
    """The prompt's tokens, estimated from its characters (texts by reference must have been
    resolved): messages, this turn's tool rounds and the tools offered."""
    chars = sum(len(m.content) for m in request.messages)
    messages = len(request.messages)
    for round_ in request.tool_rounds:
        chars += len(round_.text) + sum(len(c.name) + len(c.arguments) for c in round_.calls)
        chars += sum(len(r) for r in round_.results) + sum(len(t) for t in round_.then)
        messages += 1 + len(round_.calls) + len(round_.then)
    if request.tools:
        chars += len(json.dumps(request.tools))
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN + messages * TOKENS_PER_MESSAGE


def until_next_utc_day(now: float) -> float:
    """Seconds from `now` (epoch seconds) until just after the next UTC midnight, when each
    tenant's daily budget starts again."""
    return DAY_SECONDS - now % DAY_SECONDS + 1.0


def usd(amount: float) -> str:
    """An amount as people read it: cents for most, more digits for small ones."""
    return f"${amount:.2f}" if amount >= 1 or amount == 0 else f"${amount:.6f}".rstrip("0")

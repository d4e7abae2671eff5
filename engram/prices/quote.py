"""Before an LLM call is sent: could it cross the agent's budget? Then it is not sent. (Its
tenant's daily budget is held against the same worst case: activities/tenant_budget.py.)"""

from __future__ import annotations

from engram.prices import PriceTable, Usage
from engram.vocabulary import ErrorCode, TurnOutcome
from engram.workflows.cost import DEFAULT_MAX_OUTPUT_TOKENS, estimated_input_tokens, usd
from engram.workflows.types import LLMRequest, LLMResult


def refused(prices: PriceTable, model: str, request: LLMRequest) -> LLMResult | None:
    """The result of a call whose worst case costs more than the budget it carries; None if it
    may be sent (or has no budget)."""
    if request.budget_usd is None:
        return None
    worst = worst_case(prices, model, request)
    if worst <= request.budget_usd:
        return None
    return LLMResult(
        outcome=TurnOutcome.FAILED,
        pieces=[],
        error_code=ErrorCode.BUDGET_EXHAUSTED,
        error_message=(
            f"the next call to {model} could cost up to {usd(worst)}, more than the "
            f"{usd(request.budget_usd)} left of the budget"
        ),
    )


def worst_case(prices: PriceTable, model: str, request: LLMRequest) -> float:
    """The most the call could cost: its prompt's estimated tokens, and the output tokens the
    request bounds it to (DEFAULT_MAX_OUTPUT_TOKENS if it names none)."""
    output = request.max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS
    return prices.worst_case(model, estimated_input_tokens(request), output)


def priced(result: LLMResult, prices: PriceTable, model: str, usage: Usage) -> LLMResult:
    """`result` with the usage the endpoint reported, and its cost."""
    result.prompt_tokens = usage.prompt
    result.completion_tokens = usage.completion
    result.cached_tokens = usage.cached
    result.reasoning_tokens = usage.reasoning
    result.cost_usd = prices.cost(model, usage)
    return result

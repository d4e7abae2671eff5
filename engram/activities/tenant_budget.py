"""A tenant's daily budget, as the LLM activity keeps it: hold each call's worst case in the store
before it is sent, settle to its cost once answered (engram/transcripts/spend.py).

A call whose hold is refused is never sent: the activity returns TENANT_BUDGET_EXHAUSTED and the
workflow waits (status budget_exhausted) until it is resumed or the next UTC day. Agents without a
tenant (auth off) are bounded by their own max_cost_usd only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from engram.transcripts.spend import Hold, SpendStore, utc_day
from engram.vocabulary import ErrorCode, TurnOutcome
from engram.workflows.cost import usd
from engram.workflows.types import LLMResult

log = logging.getLogger(__name__)


class TenantBudgetExhausted(Exception):
    """The call could cross its tenant's daily budget; the message says by how much."""


@dataclass
class Spending:
    """One call's hold: `cost_usd` is what settles it (0 unless the call was answered)."""

    hold: Hold
    cost_usd: float = 0.0


class TenantBudgets:
    def __init__(self, store: SpendStore | None, default_daily_usd: float = 0.0) -> None:
        self.store = store
        # The daily budget of a tenant without one of its own (0: none).
        self.default_daily_usd = default_daily_usd

    async def allows(self, tenant: str, model: str, worst_usd: float) -> bool:
        """Whether a hold of `worst_usd` would be granted now (one is taken and given back)."""
        try:
            async with self.spending(tenant, model, worst_usd):
                return True
        except TenantBudgetExhausted:
            return False

    @asynccontextmanager
    async def spending(self, tenant: str, model: str, worst_usd: float) -> AsyncIterator[Spending]:
        """Hold `worst_usd` of the tenant's day while the block sends the call (raises
        TenantBudgetExhausted if that could cross its budget), then settle the hold to the
        block's `cost_usd`: 0 if it raised or was cancelled."""
        now = time.time()
        hold = Hold(
            hold_id=str(uuid.uuid4()),
            tenant=tenant,
            day=utc_day(now),
            amount_usd=worst_usd,
            held_at=now,
        )
        spending = Spending(hold)
        if self.store is None or not tenant:
            yield spending
            return
        day = await asyncio.to_thread(self.store.hold_spend, hold, self.default_daily_usd)
        if not day.granted:
            assert day.budget_usd is not None
            in_flight = f" and {usd(day.held_usd)} held by calls in flight" if day.held_usd else ""
            raise TenantBudgetExhausted(
                f"tenant {tenant} has spent {usd(day.spent_usd)} of its daily budget of "
                f"{usd(day.budget_usd)} today (UTC){in_flight}; the next call to {model} could "
                f"cost up to {usd(worst_usd)}"
            )
        try:
            yield spending
        finally:
            await self._settle(spending)

    async def _settle(self, spending: Spending) -> None:
        assert self.store is not None
        try:
            # Shielded: a cancelled call still gives its hold back (and counts what it cost).
            await asyncio.shield(
                asyncio.to_thread(self.store.settle_spend, spending.hold, spending.cost_usd)
            )
        except Exception as err:  # the call was made: failing it now would only send it again
            log.warning(
                "cannot settle tenant %s's spend of %s: %s (its hold lapses on its own)",
                spending.hold.tenant,
                usd(spending.cost_usd),
                err,
            )


def refused(err: TenantBudgetExhausted) -> LLMResult:
    """The result of a call its tenant's budget refused: never sent."""
    return LLMResult(
        outcome=TurnOutcome.FAILED,
        pieces=[],
        error_code=ErrorCode.TENANT_BUDGET_EXHAUSTED,
        error_message=str(err),
    )

"""What each tenant spends on LLM calls per UTC day, and its daily budget: the store's part.

Before an LLM call is sent, the worker holds the call's worst case against its tenant's budget
for the day (`hold_spend`); once the call is answered it settles the hold to the call's real cost
(`settle_spend`), or to 0 when the call failed. A hold is granted only if what the day has spent,
plus every live hold, plus it stays within the budget, checked and taken in one transaction of
the store: however many workers and agents call at once, the calls in flight can never together
cross it. A worker that dies between the two leaves its hold behind; it stops counting after
HOLD_SECONDS, longer than an LLM attempt may take.

The budget is the tenant's own (`engram keys budget TENANT --daily-usd X`; 0: no bound), else the
worker's default (`--tenant-daily-budget-usd`; 0: none).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

# An LLM attempt lives at most its start-to-close timeout (10 minutes,
# workflows/agent_workflow.py); a hold older than this belongs to one that died.
HOLD_SECONDS = 15 * 60


def utc_day(at: float | None = None) -> str:
    """The UTC day of `at` (default: now), as the store keys spend by: YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at is None else at))


@dataclass(frozen=True, kw_only=True)
class Hold:
    """A call's worst case, held against its tenant's budget for one day until it is settled."""

    hold_id: str
    tenant: str
    day: str
    amount_usd: float
    held_at: float


@dataclass(frozen=True, kw_only=True)
class DaySpend:
    """A tenant's day as a hold found it."""

    granted: bool
    """The hold was taken (always, without a budget)."""
    budget_usd: float | None
    """The tenant's daily budget; None: no bound."""
    spent_usd: float
    """Settled calls' cost that day."""
    held_usd: float
    """Other calls' live holds that day."""


def effective_budget(own: float | None, default: float) -> float | None:
    """The daily budget that applies: the tenant's own, else the default; 0 means no bound."""
    budget = default if own is None else own
    return budget if budget > 0 else None


def grants(budget: float | None, spent: float, held: float, amount: float) -> bool:
    """Whether a hold of `amount` keeps the day within its budget."""
    return budget is None or spent + held + amount <= budget


@dataclass(frozen=True, kw_only=True)
class TenantDay:
    """A row of `engram keys budget`: a tenant's budget and what it spent on one day."""

    tenant: str
    own_budget_usd: float | None
    """Set with `engram keys budget` (0: no bound); None: the workers' default applies."""
    spent_usd: float
    held_usd: float


class SpendStore(Protocol):
    """Tenants' daily budgets and spend (the LLM activity holds and settles, `engram keys budget`
    sets and reads)."""

    def set_tenant_budget(self, tenant: str, daily_usd: float | None) -> None:
        """The tenant's own daily budget in USD (0: no bound); None drops it (the workers'
        default applies)."""

    def hold_spend(self, hold: Hold, default_budget_usd: float) -> DaySpend:
        """Take `hold` if the day stays within the tenant's budget with it (atomically: no other
        hold of the tenant is taken in between); what the day looked like either way. Holds older
        than HOLD_SECONDS do not count. Without a budget it is granted at once, and neither kept
        nor counted (spent and held read 0)."""

    def settle_spend(self, hold: Hold, cost_usd: float) -> None:
        """Drop the hold (if it is still there) and add `cost_usd` to its tenant's day."""

    def tenant_days(self, day: str) -> list[TenantDay]:
        """Every tenant with a budget of its own or spend on `day`, by name."""

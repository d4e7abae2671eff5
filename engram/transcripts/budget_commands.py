"""`engram keys budget [TENANT] [--daily-usd X | --clear]`: tenants' daily budgets, and what each
has spent today (UTC), in the store the workers keep them in (engram/transcripts/spend.py).

Workers read a tenant's budget at each LLM call, so a change holds from the next call on. Agents
already waiting for their tenant's budget go on when resumed (`engram agents resume --tenant T`),
or at the next UTC day.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Protocol

from engram.auth.key_store import KeyStore
from engram.auth.records import TENANT_PATTERN
from engram.transcripts.spend import SpendStore, TenantDay, utc_day
from engram.workflows.cost import usd


class BudgetStore(KeyStore, SpendStore, Protocol):
    """Budgets and spend, and the keys (whose tenants are listed too)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tenant", nargs="?", metavar="TENANT", help="the tenant (default: list every tenant)"
    )
    change = parser.add_mutually_exclusive_group()
    change.add_argument(
        "--daily-usd",
        type=float,
        metavar="USD",
        help="set the tenant's daily budget in USD, per UTC day (0: no bound)",
    )
    change.add_argument(
        "--clear",
        action="store_true",
        help="drop the tenant's own budget: the workers' --tenant-daily-budget-usd applies",
    )


def run(args: argparse.Namespace, store: BudgetStore) -> int:
    tenant: str | None = args.tenant
    if tenant is not None and not TENANT_PATTERN.match(tenant):
        print(f"error: no tenant can be named {tenant!r}", file=sys.stderr)
        return 2
    if args.daily_usd is not None or args.clear:
        if tenant is None:
            print("error: name the tenant whose budget to change", file=sys.stderr)
            return 2
        if args.daily_usd is not None and not (
            math.isfinite(args.daily_usd) and args.daily_usd >= 0
        ):
            print("error: --daily-usd is a number of USD, 0 or more", file=sys.stderr)
            return 2
        store.set_tenant_budget(tenant, None if args.clear else args.daily_usd)
        if args.clear:
            print(f"Tenant {tenant} has no daily budget of its own: the workers' default applies.")
        elif args.daily_usd:
            print(f"Tenant {tenant}'s daily budget is {usd(args.daily_usd)} (UTC days).")
        else:
            print(f"Tenant {tenant} has no daily bound.")
        print(
            "Workers apply it from each agent's next LLM call; agents waiting for this tenant's "
            f"budget go on once resumed: engram agents resume --tenant {tenant}"
        )
    _list(store, tenant)
    return 0


def _list(store: BudgetStore, tenant: str | None) -> None:
    today = utc_day()
    days = {d.tenant: d for d in store.tenant_days(today)}
    for key in store.api_keys():
        days.setdefault(
            key.tenant,
            TenantDay(tenant=key.tenant, own_budget_usd=None, spent_usd=0.0, held_usd=0.0),
        )
    if tenant is not None:
        days = {
            tenant: days.get(tenant)
            or TenantDay(tenant=tenant, own_budget_usd=None, spent_usd=0.0, held_usd=0.0)
        }
    if not days:
        print("No tenants: no API keys, budgets or spend yet.")
        return
    rows = [("TENANT", "DAILY BUDGET", f"SPENT {today} (UTC)", "HELD BY CALLS IN FLIGHT")]
    for day in sorted(days.values(), key=lambda d: d.tenant):
        rows.append((day.tenant, _budget(day), usd(day.spent_usd), usd(day.held_usd)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _budget(day: TenantDay) -> str:
    if day.own_budget_usd is None:
        return "workers' default"
    return usd(day.own_budget_usd) if day.own_budget_usd else "none"

"""A tenant's share of the engine: its unanswered inputs over all its agents are bounded."""

from __future__ import annotations

import contextvars

import pytest

from engram.auth import principal
from engram.auth.limits import InputBounds, LimitExceeded
from engram.auth.principal import Principal
from engram.auth.records import Role


def as_caller(tenant: str, key_id: str = "k") -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(principal.set_current, Principal(tenant=tenant, role=Role.MEMBER, key_id=key_id))
    return context


def test_one_tenant_cannot_take_more_than_its_share() -> None:
    bounds = InputBounds(per_stream=8, per_agent=10, per_tenant=3)
    a, b = as_caller("a"), as_caller("b")
    with bounds.stream() as first, bounds.stream() as second, bounds.stream() as other:
        tickets = [a.run(first.accept, f"agent-{i}") for i in range(2)]
        tickets.append(a.run(second.accept, "agent-9"))
        # A fourth input of tenant a, on any stream and any agent, is refused...
        with pytest.raises(LimitExceeded, match="your tenant"):
            a.run(second.accept, "agent-10")
        # ...while tenant b still gets in.
        b.run(other.accept, "agent-b")
        # An answer frees a place.
        tickets[0].done()
        a.run(second.accept, "agent-10")
    # Streams closed: everything given back.
    with bounds.stream() as again:
        for i in range(3):
            a.run(again.accept, f"agent-{i}")


def test_without_keys_there_is_no_tenant_to_bound() -> None:
    bounds = InputBounds(per_stream=0, per_agent=0, per_tenant=1)
    with bounds.stream() as inputs:
        for i in range(5):
            inputs.accept(f"agent-{i}")  # the open principal: `engram dev` without keys

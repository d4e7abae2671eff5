"""Abuse limits: calls (and stream messages) per second per key, concurrent Chat streams per key,
agents per tenant, and inputs accepted but not yet answered per Chat stream and per agent.

All are generous by default and configurable (`--rate-limit`, `--rate-burst`,
`--max-chat-streams`, `--max-agents-per-tenant`, `--max-stream-inputs`, `--max-agent-inputs` or
their ENGRAM_* variables); 0 turns one off. Exceeding one is RESOURCE_EXHAUSTED with a message
naming the limit. They apply per gateway process: N gateways allow N times the rate and streams.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engram.auth import principal


class LimitExceeded(Exception):
    """Refused as RESOURCE_EXHAUSTED; the message says which limit and how to stay under it."""


@dataclass(frozen=True)
class Limits:
    rate: float = 100.0
    """Calls (and Chat messages) per second per key, sustained."""
    burst: int = 200
    """Calls a key may make at once before the rate applies."""
    chat_streams: int = 64
    """Open Chat streams per key."""
    agents_per_tenant: int = 10_000
    """Running agents per tenant."""
    stream_inputs: int = 8
    """Messages a Chat stream has read but not yet answered (a turn answered is one streamed to
    its end; a command, one applied)."""
    agent_inputs: int = 16
    """The same for one agent, over every stream on this gateway. Temporal holds at most 10
    updates in flight per workflow, but only four callers wait on an agent's turns in updates
    (workflows/waiters.py): the others are told `later` and poll, holding none."""
    tenant_inputs: int = 16
    """The same for one tenant, over all its agents on this gateway (with keys): a tenant's share
    of the engine's turns, so that a flood cannot queue more turns than the engine finishes in
    well under a second (2 cores finish about 23 a second; bench/security.py measures it)."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        env = os.environ.get
        group = parser.add_argument_group("limits (per API key or tenant; 0 means none)")
        group.add_argument(
            "--rate-limit",
            type=float,
            default=float(env("ENGRAM_RATE_LIMIT", str(Limits.rate))),
            help="calls and chat messages per second per key (ENGRAM_RATE_LIMIT)",
        )
        group.add_argument(
            "--rate-burst",
            type=int,
            default=int(env("ENGRAM_RATE_BURST", str(Limits.burst))),
            help="calls a key may make at once (ENGRAM_RATE_BURST)",
        )
        group.add_argument(
            "--max-chat-streams",
            type=int,
            default=int(env("ENGRAM_MAX_CHAT_STREAMS", str(Limits.chat_streams))),
            help="open Chat streams per key (ENGRAM_MAX_CHAT_STREAMS)",
        )
        group.add_argument(
            "--max-agents-per-tenant",
            type=int,
            default=int(env("ENGRAM_MAX_AGENTS_PER_TENANT", str(Limits.agents_per_tenant))),
            help="running agents per tenant (ENGRAM_MAX_AGENTS_PER_TENANT)",
        )
        group.add_argument(
            "--max-stream-inputs",
            type=int,
            default=int(env("ENGRAM_MAX_STREAM_INPUTS", str(Limits.stream_inputs))),
            help="messages a Chat stream may have sent but not yet had answered "
            "(ENGRAM_MAX_STREAM_INPUTS)",
        )
        group.add_argument(
            "--max-agent-inputs",
            type=int,
            default=int(env("ENGRAM_MAX_AGENT_INPUTS", str(Limits.agent_inputs))),
            help="the same per agent, over all its Chat streams (ENGRAM_MAX_AGENT_INPUTS)",
        )
        group.add_argument(
            "--max-tenant-inputs",
            type=int,
            default=int(env("ENGRAM_MAX_TENANT_INPUTS", str(Limits.tenant_inputs))),
            help="the same per tenant, over all its agents, with API keys "
            "(ENGRAM_MAX_TENANT_INPUTS)",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Limits:
        return cls(
            rate=args.rate_limit,
            burst=args.rate_burst,
            chat_streams=args.max_chat_streams,
            agents_per_tenant=args.max_agents_per_tenant,
            stream_inputs=args.max_stream_inputs,
            agent_inputs=args.max_agent_inputs,
            tenant_inputs=args.max_tenant_inputs,
        )


class RateLimiter:
    """A token bucket per key: `burst` calls at once, then `rate` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)

    def charge(self, key_id: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, at = self._buckets.get(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            raise LimitExceeded(
                f"rate limit exceeded: at most {self.rate:g} calls per second per API key "
                f"(bursts of {self.burst}); slow down and retry"
            )
        self._buckets[key_id] = (tokens - 1.0, now)


class StreamSlots:
    """Counts the open Chat streams of each key."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    @contextmanager
    def hold(self, key_id: str) -> Iterator[None]:
        count = self._open.get(key_id, 0)
        if 0 < self.limit <= count:
            raise LimitExceeded(
                f"too many open Chat streams: at most {self.limit} per API key; "
                "close one (or send several messages on one stream)"
            )
        self._open[key_id] = count + 1
        try:
            yield
        finally:
            left = self._open[key_id] - 1
            if left:
                self._open[key_id] = left
            else:
                del self._open[key_id]


class InputBounds:
    """Counts the inputs each Chat stream, each agent and each tenant has had read but not yet
    answered, so a flood is refused at once instead of waiting in a socket, or in Temporal, for
    minutes, and one tenant cannot fill the engine with turns that others then wait behind."""

    def __init__(self, per_stream: int, per_agent: int, per_tenant: int = 0) -> None:
        self.per_stream = per_stream
        self.per_agent = per_agent
        self.per_tenant = per_tenant
        self._agents: dict[str, int] = {}
        self._tenants: dict[str, int] = {}

    @contextmanager
    def stream(self) -> Iterator[StreamInputs]:
        """One Chat stream's inputs; whatever is unanswered when it closes is given back."""
        inputs = StreamInputs(self)
        try:
            yield inputs
        finally:
            inputs.release()

    def _take(self, agent_id: str, tenant: str | None) -> None:
        count = self._agents.get(agent_id, 0)
        if 0 < self.per_agent <= count:
            raise LimitExceeded(
                f"too many unanswered inputs for agent {agent_id[:64]}: at most "
                f"{self.per_agent} per agent; wait for its replies before sending more"
            )
        if tenant is not None and 0 < self.per_tenant <= self._tenants.get(tenant, 0):
            raise LimitExceeded(
                f"too many unanswered inputs for your tenant: at most {self.per_tenant} over "
                "all its agents; wait for replies before sending more"
            )
        self._agents[agent_id] = count + 1
        if tenant is not None:
            self._tenants[tenant] = self._tenants.get(tenant, 0) + 1

    def _give(self, agent_id: str, tenant: str | None) -> None:
        _decrement(self._agents, agent_id)
        if tenant is not None:
            _decrement(self._tenants, tenant)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


class StreamInputs:
    """The inputs one Chat stream has read and not yet answered."""

    def __init__(self, bounds: InputBounds) -> None:
        self._bounds = bounds
        self._open: set[Ticket] = set()

    def accept(self, agent_id: str) -> Ticket:
        """Count an input just read (LimitExceeded past a bound); `done` it once answered."""
        if 0 < self._bounds.per_stream <= len(self._open):
            raise LimitExceeded(
                f"too many unanswered inputs on this Chat stream: at most "
                f"{self._bounds.per_stream}; wait for replies before sending more"
            )
        caller = principal.current()
        # Without keys everyone is the same open principal: no tenant to bound.
        tenant = caller.tenant if caller.scoped else None
        self._bounds._take(agent_id, tenant)
        ticket = Ticket(self, agent_id, tenant)
        self._open.add(ticket)
        return ticket

    def _answered(self, ticket: Ticket) -> None:
        if ticket in self._open:
            self._open.discard(ticket)
            self._bounds._give(ticket.agent_id, ticket.tenant)

    def release(self) -> None:
        for ticket in list(self._open):
            self._answered(ticket)


class Ticket:
    """One input counted against its stream's and agent's bounds until `done`."""

    def __init__(self, inputs: StreamInputs, agent_id: str, tenant: str | None) -> None:
        self._inputs = inputs
        self.agent_id = agent_id
        self.tenant = tenant

    def done(self) -> None:
        self._inputs._answered(self)

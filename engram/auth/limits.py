"""Abuse limits: calls per second per key, concurrent Chat streams per key, agents per tenant.

All three are generous by default and configurable (`--rate-limit`, `--rate-burst`,
`--max-chat-streams`, `--max-agents-per-tenant` or their ENGRAM_* variables); 0 turns one off.
Exceeding one is RESOURCE_EXHAUSTED with a message naming the limit. They apply per gateway
process: N gateways allow N times the rate and streams.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


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

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Limits:
        return cls(
            rate=args.rate_limit,
            burst=args.rate_burst,
            chat_streams=args.max_chat_streams,
            agents_per_tenant=args.max_agents_per_tenant,
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

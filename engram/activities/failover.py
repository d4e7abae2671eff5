"""A circuit breaker per LLM endpoint, shared by one worker's LLM activities.

After `failures` consecutive failures an endpoint's circuit opens: calls skip it and go straight
to the next model of their chain, paying no timeout. Once `cooldown` seconds have passed, one call
is let through as a probe (half-open); its success closes the circuit, its failure opens it again
for another cool-down. A worker's activities run on one event loop, so no lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class CircuitBreaker:
    failures: int = 3
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _failed: int = 0
    _opened_at: float | None = None
    _probing: bool = False

    @property
    def open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """Whether a call may go to the endpoint now (a probe, if its circuit is open)."""
        if self._opened_at is None:
            return True
        if self._probing or self.clock() - self._opened_at < self.cooldown:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        self._failed, self._opened_at, self._probing = 0, None, False

    def failed(self) -> None:
        self._failed += 1
        if self._probing or self._failed >= self.failures:
            self._opened_at = self.clock()
        self._probing = False

    def released(self) -> None:
        """A call that neither succeeded nor failed (cancelled) gives its probe back."""
        self._probing = False


@dataclass
class Breakers:
    """One breaker per endpoint, by its name and base URL."""

    failures: int = 3
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _by_endpoint: dict[str, CircuitBreaker] = field(default_factory=dict)

    def of(self, endpoint: str) -> CircuitBreaker:
        breaker = self._by_endpoint.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(self.failures, self.cooldown, self.clock)
            self._by_endpoint[endpoint] = breaker
        return breaker

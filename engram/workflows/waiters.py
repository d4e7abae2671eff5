"""Callers waiting for a turn to end, within Temporal's budget of updates in flight.

Temporal admits about 10 updates in flight per workflow, and an update that waits for a turn holds
one for as long as the turn lasts, which may be days (a turn waiting for an approval). So at most
MAX_WAITING updates wait for queued messages; another is answered at once with `later`, and its
caller polls the `turn_state` query, which costs no update, and asks again when the turn runs or
has ended. The running turn holds at most two more: its sender's `chat` and its followers'
shared wait (its id is `wait-turn-<message id>`, so they count once). The rest of the budget is
headroom for the updates that must always get through: decide, control, edit, withdraw.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from engram.workflows import patches

MAX_WAITING = 4


class Waiters:
    def __init__(self) -> None:
        self._count = 0

    def turn_away(self, queued: bool) -> bool:
        """(In an update handler) whether this caller, waiting for a message that is still
        `queued` or for the turn running now, must be answered `later`. The running turn always
        admits its waiters: they share one update, and the sender's own `chat` is the other."""
        return queued and self._count >= MAX_WAITING and patches.check(patches.FEW_WAITERS)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1

"""Failed authentications: remembered, and limited per peer address and per key id.

A key id is public, so anyone can present a real one with a made-up secret; each such guess would
cost an Argon2id verification (tens of milliseconds of a core). A secret that failed is remembered
(as a SHA-256 of the whole key) for `REMEMBER_SECONDS`, so repeating it costs no hash (and is
answered UNAUTHENTICATED, as ever); and past `burst` failed hashes an address, or a key id, has
new guesses refused unhashed (RESOURCE_EXHAUSTED) until its failures drain at `rate` per second.
Malformed keys and unknown key ids cost no hash and do not count. A key verified before is never
slowed by either: it is recognised before any limit is looked at.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from engram.auth.limits import LimitExceeded

REMEMBER_SECONDS = 60.0
REMEMBERED = 10_000
TRACKED = 10_000
FAILURE_RATE = 1.0
FAILURE_BURST = 10


class FailedKeys:
    """Digests of keys that failed recently."""

    def __init__(self, seconds: float = REMEMBER_SECONDS, size: int = REMEMBERED) -> None:
        self.seconds = seconds
        self.size = size
        self._failed: OrderedDict[bytes, float] = OrderedDict()  # digest -> when it failed

    def __contains__(self, digest: bytes) -> bool:
        at = self._failed.get(digest)
        if at is None:
            return False
        if time.monotonic() - at > self.seconds:
            del self._failed[digest]
            return False
        return True

    def add(self, digest: bytes) -> None:
        self._failed[digest] = time.monotonic()
        self._failed.move_to_end(digest)
        while len(self._failed) > self.size:
            self._failed.popitem(last=False)

    def forget(self, digest: bytes) -> None:
        self._failed.pop(digest, None)


class FailureLimiter:
    """A leaky bucket of failures per name (a peer address or a key id)."""

    def __init__(
        self, rate: float = FAILURE_RATE, burst: int = FAILURE_BURST, size: int = TRACKED
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.size = size
        self._level: OrderedDict[str, tuple[float, float]] = OrderedDict()  # name -> (level, at)

    def check(self, name: str, what: str) -> None:
        """LimitExceeded if `name` has failed too often lately."""
        if name and self._drained(name) >= self.burst:
            raise LimitExceeded(
                f"too many failed authentications from this {what}: at most {self.burst} at "
                f"once, then {self.rate:g} per second; check the API key and retry later"
            )

    def failed(self, name: str) -> None:
        if not name:
            return
        self._level[name] = (self._drained(name) + 1.0, time.monotonic())
        self._level.move_to_end(name)
        while len(self._level) > self.size:
            self._level.popitem(last=False)

    def _drained(self, name: str) -> float:
        level, at = self._level.get(name, (0.0, time.monotonic()))
        return max(0.0, level - (time.monotonic() - at) * self.rate)


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer ("ipv4:1.2.3.4:5678" -> "ipv4:1.2.3.4"): a client's
    connections share one budget whatever their source ports."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rpartition(":")[0]
    return peer

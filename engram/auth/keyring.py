"""Checks the key a call presents against the keys in the store.

The store is re-read at most every `refresh` seconds (default 1), so a key created or revoked on
any host takes effect on every gateway within that time (open streams included: they check their
key on every message and every `STREAM_CHECK_SECONDS`), without a database read per call. A key
whose secret verified once is remembered (as a SHA-256 of the whole key, never the key) so the
Argon2 hash is computed once per key and process, not once per call. Failures are remembered
and limited (engram.auth.failures), so wrong secrets cannot make a gateway hash on every call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import NoReturn

from engram.auth import keys
from engram.auth.failures import FailedKeys, FailureLimiter
from engram.auth.key_store import KeyStore
from engram.auth.metadata import Pairs
from engram.auth.principal import OPEN, Principal
from engram.auth.records import ApiKey

log = logging.getLogger(__name__)

EXPECTED = "send gRPC metadata 'authorization: Bearer <key>' or 'x-api-key: <key>'"
VERIFIED_CACHE_SIZE = 10_000
# An unknown key id may be a key created a moment ago: look again, but not on every call.
UNKNOWN_RELOAD_SECONDS = 0.5


class AuthError(Exception):
    """The call is refused as UNAUTHENTICATED, with a message that never contains the key."""


@dataclass(frozen=True)
class _Snapshot:
    keys: dict[str, ApiKey]
    read_at: float


class KeyRing:
    def __init__(self, store: KeyStore, *, refresh: float = 1.0, required: bool = False):
        self.store = store
        self.refresh = refresh
        # True when the gateway must never run open (it listens beyond loopback without
        # --insecure-no-auth): calls are refused even if the store holds no key.
        self.always_required = required
        self._snapshot = _Snapshot({}, read_at=-1e9)
        self._reload = asyncio.Lock()
        self._verified: OrderedDict[bytes, str] = OrderedDict()  # digest -> key id
        # Argon2 is CPU and memory: one hash at a time leaves the other cores to everyone else.
        self._hashing = asyncio.Semaphore(1)
        self._failed = FailedKeys()
        self._failing_peers = FailureLimiter()
        self._failing_keys = FailureLimiter()

    def load(self) -> None:
        """Read the store now (blocking): for start-up, before the event loop serves calls."""
        self._snapshot = _Snapshot({k.key_id: k for k in self.store.api_keys()}, time.monotonic())

    @property
    def key_count(self) -> int:
        """Keys in the store as last read, revoked and expired ones included."""
        return len(self._snapshot.keys)

    @property
    def has_keys(self) -> bool:
        return bool(self._snapshot.keys)

    async def required(self) -> bool:
        """Whether calls need a key: always once the store holds any key, revoked ones included
        (revoking every key must not silently open the gateway)."""
        await self._fresh()
        return self.always_required or self.has_keys

    def required_now(self) -> bool:
        """`required` as last read, without touching the store (for synchronous callers)."""
        return self.always_required or self.has_keys

    async def authenticate(self, metadata: Pairs, peer: str = "") -> Principal:
        """The caller, from its key; AuthError if refused, LimitExceeded if `peer` (an address)
        or the key id presented has failed too often lately (nothing is hashed then)."""
        if not await self.required():
            return OPEN
        presented = presented_key(metadata)
        if presented is None:
            raise AuthError(f"this gateway requires an API key: {EXPECTED}")
        parsed = keys.parse(presented)
        if parsed is None:
            self._refuse()
        key_id, secret = parsed
        digest = hashlib.sha256(presented.encode()).digest()
        record = self._snapshot.keys.get(key_id)
        if record is None and time.monotonic() - self._snapshot.read_at > UNKNOWN_RELOAD_SECONDS:
            await self._fresh(force=True)
            record = self._snapshot.keys.get(key_id)
        if record is None or not await self._matches(record, digest, secret, peer):
            self._refuse(key_id)
        refusal = _refusal(record)
        if refusal is not None:
            log.info("refused a call with %s API key %s", record.state(), key_id)
            raise AuthError(refusal)
        return Principal(tenant=record.tenant, role=record.role, key_id=key_id)

    def _refuse(self, key_id: str = "") -> NoReturn:
        # Debug only: a flood of made-up keys must not become a flood of log lines.
        log.debug("refused a call with an invalid API key (key id %s)", key_id or "-")
        raise AuthError(f"the API key is not valid: {EXPECTED}")

    async def still_valid(self, key_id: str) -> str | None:
        """Why a key that opened a stream may no longer use it (revoked, expired, or gone from
        the store), or None. Reads the store at most every `refresh` seconds."""
        await self._fresh()
        record = self._snapshot.keys.get(key_id)
        if record is None:
            return f"the API key is not valid: {EXPECTED}"
        return _refusal(record)

    async def _matches(self, record: ApiKey, digest: bytes, secret: str, peer: str) -> bool:
        known = self._verified.get(digest)
        if known is not None:
            self._verified.move_to_end(digest)
            return hmac.compare_digest(known, record.key_id)
        if digest in self._failed:
            return False  # the same wrong secret again: no need to hash it to know
        self._failing_peers.check(peer, "address")
        self._failing_keys.check(record.key_id, "key id")
        async with self._hashing:
            ok = await asyncio.to_thread(keys.verify, record, secret)
        if ok:
            self._verified[digest] = record.key_id
            while len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        else:
            # Only hashed failures count against the budgets: the others cost nothing to refuse.
            self._failed.add(digest)
            self._failing_peers.failed(peer)
            self._failing_keys.failed(record.key_id)
        return ok

    async def _fresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._snapshot.read_at < self.refresh:
            return
        async with self._reload:
            if not force and time.monotonic() - self._snapshot.read_at < self.refresh:
                return  # another call reloaded while this one waited
            try:
                records = await asyncio.to_thread(self.store.api_keys)
            except Exception as err:
                # Keep the last snapshot: a database outage must not lock every client out.
                # Revocations made meanwhile apply once the store answers again.
                log.warning("cannot read API keys from the store: %s", err)
                self._snapshot = _Snapshot(self._snapshot.keys, time.monotonic())
                return
            self._snapshot = _Snapshot({k.key_id: k for k in records}, time.monotonic())


def _refusal(record: ApiKey) -> str | None:
    if record.revoked_at is not None:
        return f"the API key is not valid (revoked): {EXPECTED}"
    if not record.usable():
        return f"the API key has expired: {EXPECTED}"
    return None


def presented_key(metadata: Pairs) -> str | None:
    """The key from `authorization: Bearer <key>` or `x-api-key: <key>`, if either is sent."""
    for name, value in metadata:
        if isinstance(value, bytes):
            continue
        if name == "x-api-key" and value.strip():
            return value.strip()
        if name == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None

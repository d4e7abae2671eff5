"""API keys: how one looks, how it is made, hashed and checked, and how long it lives.

A key is `engram_<key id>_<secret>`. The key id is public (it names the key in `engram keys
list` and in log lines) and finds the stored record; the secret is 256 random bits, kept only as
an Argon2id hash. Keys are high-entropy, so the hash parameters are the modest OWASP minimum: the
hash protects a leaked store, not a guessable password.
"""

from __future__ import annotations

import re
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engram.auth.records import ApiKey, Role

PREFIX = "engram"
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_KEY = re.compile(r"^engram_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def new_key(
    tenant: str, role: Role, expires_in: float | None = None, now: float | None = None
) -> tuple[str, ApiKey]:
    """A fresh key and the record to store for it. The key is shown once and kept nowhere."""
    now = time.time() if now is None else now
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = ApiKey(
        key_id=key_id,
        tenant=tenant,
        role=role,
        secret_hash=_HASHER.hash(secret),
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
    )
    return f"{PREFIX}_{key_id}_{secret}", record


def parse(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    match = _KEY.match(key)
    return (match.group(1), match.group(2)) if match else None


def verify(record: ApiKey, secret: str) -> bool:
    """The secret matches the record's hash (constant-time inside argon2)."""
    try:
        return _HASHER.verify(record.secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def parse_duration(text: str) -> float | None:
    """`90d`, `12h`, `30m`, `45s`, `2w` in seconds; `never` (or empty) is None."""
    text = text.strip().lower()
    if text in ("", "never"):
        return None
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h, 30m, 45s or 2w")
    return float(int(match.group(1)) * _UNITS[match.group(2)])

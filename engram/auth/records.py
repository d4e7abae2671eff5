"""What the store keeps about an API key: never the key itself, only its salted hash."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Tenant names are plain words: they go into visibility queries and log lines as they are."""


class Role(StrEnum):
    MEMBER = "member"
    """Uses its own tenant's agents."""
    ADMIN = "admin"
    """Also reads every tenant's agents (each such read is logged)."""


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    key_id: str
    """The public part of the key, shown by `engram keys list` and in log lines."""
    tenant: str
    role: Role
    secret_hash: str
    """Argon2id hash (salt and parameters included) of the key's secret part."""
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None

    def usable(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

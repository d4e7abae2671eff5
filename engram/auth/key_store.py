"""Where API keys' records are kept: the one thing auth needs of a store.

The transcript stores (engram.transcripts) implement it; auth depends on this protocol only, so
`engram keys` and the gateway's key checks take any store that keeps key records.
"""

from __future__ import annotations

from typing import Protocol

from engram.auth.records import ApiKey


class KeyStore(Protocol):
    def add_api_key(self, key: ApiKey) -> None:
        """Store a new key's record (key ids are random; an existing id is an error)."""

    def api_keys(self) -> list[ApiKey]:
        """Every key's record, revoked and expired ones included, oldest first."""

    def revoke_api_key(self, key_id: str, at: float) -> bool:
        """Mark a key revoked; False if there is no such key or it already was."""

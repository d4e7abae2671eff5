"""The transcript store: one small interface, a SQLite file or a PostgreSQL database behind it.

A claim check: the workflow keeps its recent messages and turns and two watermarks
(`archived_through`, `archived_turns`); everything below them is here. The worker writes (through
activities, so writes are retried and recorded like any other step) and the gateway reads (for
Replay and GetHistory). Writes are idempotent, so a retried archive activity changes nothing.
It also holds the catalog of tools the workers offer, which the gateway checks agents' tools
against and lists (ListTools), and the API keys' records (salted hashes, never keys), which
`engram keys` writes and every gateway reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from engram.auth.records import ApiKey
from engram.workflows.types import AgentTool, Event, Turn


class TranscriptStore(Protocol):
    def append(self, agent_id: str, events: list[Event]) -> None:
        """Store stream events; an event already stored (same agent and seq) is left as it is."""

    def between(self, agent_id: str, after: int, through: int) -> list[Event]:
        """Events with after < seq <= through, in order."""

    def append_turns(self, agent_id: str, first_index: int, turns: list[Turn]) -> None:
        """Store turns first_index, first_index + 1, ...; a stored index is left as it is."""

    def turns(self, agent_id: str, count: int) -> list[Turn]:
        """The agent's first `count` turns, in order."""

    def put_blob(self, sha256: str, data: bytes) -> None:
        """Store an attachment's bytes under their hash (storing them again changes nothing)."""

    def get_blob(self, sha256: str) -> bytes | None:
        """An attachment's bytes, or None if the store has none by that hash."""

    def publish_tools(self, tools: list[AgentTool]) -> None:
        """Record the tools a worker offers (replacing earlier entries of the same names)."""

    def tools(self) -> list[AgentTool]:
        """Every tool some worker has offered, by name."""

    def add_api_key(self, key: ApiKey) -> None:
        """Store a new key's record (key ids are random; an existing id is an error)."""

    def api_keys(self) -> list[ApiKey]:
        """Every key's record, revoked and expired ones included, oldest first."""

    def revoke_api_key(self, key_id: str, at: float) -> bool:
        """Mark a key revoked; False if there is no such key or it already was."""

    def close(self) -> None: ...


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_transcript_store(location: str | Path) -> TranscriptStore:
    """A PostgreSQL URL (postgresql://user:pass@host/db) or the path of a SQLite file."""
    if str(location).startswith(POSTGRES_SCHEMES):
        from engram.transcripts.postgres_store import PostgresTranscriptStore

        return PostgresTranscriptStore(str(location))
    from engram.transcripts.sqlite_store import SqliteTranscriptStore

    return SqliteTranscriptStore(Path(location))

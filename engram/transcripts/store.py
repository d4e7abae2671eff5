"""The transcript store: narrow interfaces, a SQLite file or a PostgreSQL database behind them.

A claim check: the workflow keeps its recent messages and turns and two watermarks
(`archived_through`, `archived_turns`); everything below them is here. The worker writes (through
activities, so writes are retried and recorded like any other step) and the gateway reads (for
Replay and GetHistory). Writes are idempotent, so a retried archive activity changes nothing.
It also holds the catalog of tools the workers offer, which the gateway checks agents' tools
against and lists (ListTools), and the API keys' records (salted hashes, never keys), which
`engram keys` writes and every gateway reads, and what each tenant spends per UTC day against its
daily budget (engram/transcripts/spend.py), which workers keep.

Each part is its own protocol (EventStore, SearchStore, VectorStore, BlobStore, ToolCatalogStore,
SpendStore and auth's KeyStore), so each consumer asks only for what it uses; the backends
implement them all as `TranscriptStore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from engram.auth.key_store import KeyStore
from engram.transcripts.search import SearchPage, SearchQuery
from engram.transcripts.spend import SpendStore
from engram.transcripts.vectors import Nearest
from engram.workflows.types import AgentTool, Event, Turn


class EventStore(Protocol):
    """An agent's archived transcript: stream events and turns (archive writes, gateway reads)."""

    def append(self, agent_id: str, events: list[Event]) -> None:
        """Store stream events; an event already stored (same agent and seq) is left as it is."""

    def between(self, agent_id: str, after: int, through: int) -> list[Event]:
        """Events with after < seq <= through, in order."""

    def append_turns(self, agent_id: str, first_index: int, turns: list[Turn]) -> None:
        """Store turns first_index, first_index + 1, ...; a stored index is left as it is."""

    def turns(self, agent_id: str, count: int) -> list[Turn]:
        """The agent's first `count` turns, in order."""

    def forget_after(self, agent_id: str, seq: int, turn_index: int) -> None:
        """Drop the agent's events after `seq` and turns from `turn_index` on (a rewind, whose
        branch agent keeps a copy); dropping them again changes nothing."""

    def copy_through(self, source: str, target: str, seq: int, turn_count: int) -> None:
        """Store the source agent's stored events up to `seq` and its first `turn_count` turns
        as the target's (a fork), words indexed as the source's are; a copy made again changes
        nothing."""


class SearchStore(Protocol):
    """Full-text search over an agent's archived events (the recall activity, SearchHistory)."""

    def search(self, query: SearchQuery) -> SearchPage:
        """The best matches of `query` among the agent's own events, a page of them."""

    def last_seq(self, agent_id: str) -> int:
        """The newest stored event's seq (0: none)."""


class VectorStore(Protocol):
    """Events' embeddings, by agent and embedding model (engram/embeddings, when configured).

    Only events that full-text search indexes get one (engram/transcripts/vectors.py). A mark per
    agent and model says how far its events have been looked at, so indexing resumes there."""

    def index_window(self, agent_id: str, after: int, through: int) -> list[tuple[int, float, str]]:
        """(seq, ts, text) of the agent's events after < seq <= through that are indexed, their
        text as the database holds it: a sealed field is never among them."""

    def vector_mark(self, agent_id: str, model: str) -> int:
        """The seq through which the agent's events have vectors of `model` (or need none)."""

    def put_vectors(
        self, agent_id: str, model: str, rows: list[tuple[int, float, bytes]], through: int
    ) -> None:
        """Store (seq, ts, packed vector) rows and move the mark to `through` (never back)."""

    def nearest(self, query: SearchQuery, model: str, vector: bytes, k: int) -> list[Nearest]:
        """At most `k` of the query agent's events nearest `vector` (its seq and time bounds
        applied), most similar first."""


class BlobStore(Protocol):
    """Attachments' bytes, by hash (the gateway writes, the LLM activity reads)."""

    def put_blob(self, sha256: str, data: bytes) -> None:
        """Store an attachment's bytes under their hash (storing them again changes nothing)."""

    def get_blob(self, sha256: str) -> bytes | None:
        """An attachment's bytes, or None if the store has none by that hash."""


class ToolCatalogStore(Protocol):
    """The tools workers offer (workers publish, gateways check and list)."""

    def publish_tools(self, tools: list[AgentTool]) -> None:
        """Record the tools a worker offers (replacing earlier entries of the same names)."""

    def tools(self) -> list[AgentTool]:
        """Every tool some worker has offered, by name."""


class TranscriptStore(
    EventStore,
    SearchStore,
    VectorStore,
    BlobStore,
    ToolCatalogStore,
    KeyStore,
    SpendStore,
    Protocol,
):
    """All of it in one database: what a backend implements and a process opens and closes."""

    def close(self) -> None: ...


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_transcript_store(location: str | Path) -> TranscriptStore:
    """A PostgreSQL URL (postgresql://user:pass@host/db) or the path of a SQLite file."""
    if str(location).startswith(POSTGRES_SCHEMES):
        from engram.transcripts.postgres_store import PostgresTranscriptStore

        return PostgresTranscriptStore(str(location))
    from engram.transcripts.sqlite_store import SqliteTranscriptStore

    return SqliteTranscriptStore(Path(location))

"""Where an agent's old stream messages and turns live once workflow state lets go of them."""

from engram.transcripts.store import (
    BlobStore,
    EventStore,
    SearchStore,
    ToolCatalogStore,
    TranscriptStore,
    VectorStore,
    open_transcript_store,
)

__all__ = [
    "BlobStore",
    "EventStore",
    "SearchStore",
    "ToolCatalogStore",
    "TranscriptStore",
    "VectorStore",
    "open_transcript_store",
]

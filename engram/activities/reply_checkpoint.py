"""What a streaming LLM call has generated so far, kept in the blob store; its heartbeat carries
only a cursor to it.

A retried call must know what the client was already shown, and a call that fails for good keeps
it in the turn's record. A heartbeat every second that carried the whole reply so far would send a
growing copy of it to Temporal every second: 60 copies of a minute-long reply. Instead each
heartbeat stores the pieces added since the last one as a chunk naming the chunk before it, and
the heartbeat carries `{"checkpoint": <newest chunk's hash>, "pieces": <count>}`. Only the last
piece can still grow (tokens are coalesced into it), so a chunk starts with it again whenever it
has. Every CHAIN_LENGTH chunks a chunk holds the whole reply, so reading one back never walks far.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engram.transcripts import BlobStore
from engram.workflows.llm_outcome import checkpoint_of, pieces_detail, stream_pieces
from engram.workflows.types import ReplyCheckpoint, StreamPiece

CHAIN_LENGTH = 32


class CheckpointLost(RuntimeError):
    """A checkpoint's chunk is not in the blob store (another store, or lost)."""


@dataclass
class ReplyCheckpoints:
    store: BlobStore
    tail: str = ""
    saved: int = 0
    # The length of the last saved piece's text: if it grew, it is saved again.
    last_length: int = 0
    chain: int = 0

    async def save(self, pieces: list[StreamPiece]) -> dict[str, Any]:
        """Store what was generated since the last save; the heartbeat detail naming it."""
        if not pieces:
            return self.detail()
        start = self.saved
        if start and len(pieces[start - 1].text) != self.last_length:
            start -= 1
        if start == len(pieces) and self.tail:
            return self.detail()
        if self.chain >= CHAIN_LENGTH:
            start = 0
        # A copy taken now: the stream goes on adding to `pieces` while the chunk is written.
        added = pieces_detail(pieces[start:])
        chunk = {"prev": self.tail if start else "", "start": start, "pieces": added}
        data = json.dumps(chunk, separators=(",", ":")).encode()
        sha256 = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self.store.put_blob, sha256, data)
        self.tail, self.saved = sha256, start + len(added)
        self.last_length = len(pieces[self.saved - 1].text) if self.saved else 0
        self.chain = self.chain + 1 if start else 1
        return self.detail()

    def detail(self) -> dict[str, Any]:
        return {"checkpoint": self.tail, "pieces": self.saved}


def load(store: BlobStore, checkpoint: ReplyCheckpoint) -> list[StreamPiece]:
    """The pieces a checkpoint names, oldest chunk first."""
    chunks: list[dict[str, Any]] = []
    sha256 = checkpoint.checkpoint
    while sha256:
        data = store.get_blob(sha256)
        if data is None:
            raise CheckpointLost(f"reply checkpoint {sha256} is not in the blob store")
        chunk = json.loads(data)
        chunks.append(chunk)
        sha256 = chunk["prev"] if chunk["start"] else ""
    pieces: list[StreamPiece] = []
    for chunk in reversed(chunks):
        pieces[chunk["start"] :] = [StreamPiece(**p) for p in chunk["pieces"]]
    return pieces[: checkpoint.pieces]


async def resumed(store: BlobStore | None, details: Sequence[object]) -> list[StreamPiece]:
    """What an earlier attempt heartbeated: a checkpoint, or (from a worker of a release before
    checkpoints) the pieces themselves."""
    checkpoint = checkpoint_of(details)
    if checkpoint is None:
        return stream_pieces(details)
    if store is None:
        return []
    try:
        return await asyncio.to_thread(load, store, checkpoint)
    except CheckpointLost:
        # Only the record of what was shown is lost: the reply is generated again.
        return []

"""Keeps agents' vectors up with their archived events, off the chat path.

Archiving an agent's events only nudges it here (archive_events returns as fast as before); a
background task on the worker's event loop then embeds what the agent's vector mark has not
reached, a window at a time, batched. A recall catches its own agent up first, for at most a
few seconds, so it sees what was just archived; whatever remains is left to the background. An
agent whose events were archived before embeddings were turned on (or on another worker) is
caught up the same way, at its next archive or recall. A failed step is tried again at the
next nudge: the mark only moves once a window's vectors are stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from engram.embeddings.client import TextEmbedder
from engram.transcripts import EventStore, SearchStore, VectorStore
from engram.transcripts.vectors import INDEX_WINDOW, pack

log = logging.getLogger(__name__)

# How long a recall waits for its agent's vectors before searching with what there is.
RECALL_CATCH_UP_SECONDS = 5.0


class IndexStore(EventStore, SearchStore, VectorStore, Protocol):
    """What indexing reads and writes."""


class Indexer:
    def __init__(self, store: IndexStore, embedder: TextEmbedder) -> None:
        self.store = store
        self.embedder = embedder
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def nudge(self, agent_id: str) -> None:
        """Index the agent's new events soon, in the background."""
        self._pending.add(agent_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def catch_up(self, agent_id: str) -> None:
        """Embed the agent's events up to its newest. Cancelling it loses nothing: the mark
        moves only with a window's vectors, in one transaction."""
        lock = self._locks.setdefault(agent_id, asyncio.Lock())
        async with lock:
            last = await asyncio.to_thread(self.store.last_seq, agent_id)
            mark = await asyncio.to_thread(self.store.vector_mark, agent_id, self.embedder.name)
            while mark < last:
                mark = await self._step(agent_id, mark, min(last, mark + INDEX_WINDOW))

    async def _step(self, agent_id: str, after: int, through: int) -> int:
        rows = await asyncio.to_thread(self.store.index_window, agent_id, after, through)
        embedded = await self.embedder.embed([text for _, _, text in rows]) if rows else []
        # Packing is CPU work: off the event loop, which streams replies.
        await asyncio.to_thread(self._store_vectors, agent_id, rows, embedded, through)
        return through

    def _store_vectors(
        self,
        agent_id: str,
        rows: list[tuple[int, float, str]],
        embedded: list[list[float]],
        through: int,
    ) -> None:
        vectors = [
            (seq, ts, pack(vector)) for (seq, ts, _), vector in zip(rows, embedded, strict=True)
        ]
        self.store.put_vectors(agent_id, self.embedder.name, vectors, through)

    async def _drain(self) -> None:
        while self._pending:
            agent_id = self._pending.pop()
            try:
                await self.catch_up(agent_id)
            except Exception as err:  # the endpoint or the store: the next nudge tries again
                log.warning("embedding agent %s's transcript failed: %s", agent_id, err)

"""The `recall` tool's search: read-only, against the transcript store, for one agent only; by
words, and by meaning too when the worker has an embeddings model (engram/embeddings)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from temporalio import activity

from engram.transcripts import SearchStore
from engram.transcripts.search import SearchPage, SearchQuery

if TYPE_CHECKING:
    # Workflow code imports these activities' inputs: the embeddings client (openai) must stay
    # out of the workflow sandbox.
    from engram.embeddings.hybrid import HybridSearch


@dataclass(kw_only=True)
class RecallInput:
    """What the model asked for; `agent_id` is the calling agent's own, set by its workflow."""

    agent_id: str
    query: str
    from_sequence: int = 0
    since: float = 0.0
    until: float = 0.0
    page: int = 0


class RecallActivities:
    def __init__(self, store: SearchStore, hybrid: HybridSearch | None = None) -> None:
        self.store = store
        self.hybrid = hybrid

    @activity.defn(name="recall")
    async def recall(self, request: RecallInput) -> SearchPage:
        query = SearchQuery(
            agent_id=request.agent_id,
            text=request.query,
            from_sequence=request.from_sequence,
            since=request.since,
            until=request.until,
        )
        query.offset = max(0, request.page) * query.limit
        if self.hybrid is not None:
            return await self.hybrid.search(query)
        return await asyncio.to_thread(self.store.search, query)

"""Recall by words and by meaning: two rankings of one agent's events, fused into one page.

The full-text ranking (every word must occur) and the agent's nearest vectors to the query's
(at least `min_similarity`), at most MAX_POOL of each, are fused by reciprocal rank: a hit
both find rises, a hit only one finds still counts. The page has the shape a full-text page
has (engram/transcripts/search.py). A query the embeddings endpoint cannot embed is searched by
its words alone: recall never fails for the want of meaning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from engram.embeddings.client import TextEmbedder
from engram.embeddings.indexer import RECALL_CATCH_UP_SECONDS, Indexer, IndexStore
from engram.embeddings.settings import EmbeddingSettings
from engram.transcripts import search
from engram.transcripts.search import SearchHit, SearchPage, SearchQuery
from engram.transcripts.vectors import MAX_POOL, fuse, pack

log = logging.getLogger(__name__)

# Candidates each ranking gives beyond the page asked for, so a page's order barely depends on
# where it starts.
HEADROOM = 50


class HybridSearch:
    def __init__(
        self, store: IndexStore, embedder: TextEmbedder, settings: EmbeddingSettings
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.indexer = Indexer(store, embedder)

    async def search(self, query: SearchQuery) -> SearchPage:
        pool = query.offset + query.limit + 1 + HEADROOM
        if not search.words(query.text) or pool > MAX_POOL:
            return await asyncio.to_thread(self.store.search, query)
        try:
            # Bounded, so a slow endpoint cannot hold the recall past its activity's timeout.
            await asyncio.wait_for(self.indexer.catch_up(query.agent_id), RECALL_CATCH_UP_SECONDS)
        except Exception as err:  # out of time, or the endpoint: search what is embedded
            log.info("recall searches %s's vectors as they are: %r", query.agent_id, err)
            self.indexer.nudge(query.agent_id)
        try:
            [vector] = await self.embedder.embed([query.text])
        except Exception as err:  # the endpoint: words alone still answer
            log.warning("recall by meaning unavailable, by words only: %s", err)
            return await asyncio.to_thread(self.store.search, query)
        by_words = await asyncio.to_thread(
            self.store.search, dataclasses.replace(query, offset=0, limit=pool)
        )
        try:
            near = await asyncio.to_thread(
                self.store.nearest, query, self.embedder.name, pack(vector), pool
            )
        except Exception as err:  # e.g. the model's vectors changed size under the same name
            log.warning("recall by meaning failed, by words only: %s", err)
            near = []
        by_meaning = [n.seq for n in near if n.similarity >= self.settings.min_similarity]
        ranked = fuse([h.seq for h in by_words.hits], by_meaning)
        chosen = ranked[query.offset : query.offset + query.limit]
        found = {h.seq: h for h in by_words.hits}
        hits = [found.get(seq) or await self._hit(query, seq) for seq in chosen]
        more = len(ranked) > query.offset + query.limit or by_words.more
        return SearchPage(hits=[h for h in hits if h is not None], more=more)

    async def _hit(self, query: SearchQuery, seq: int) -> SearchHit | None:
        """A hit found by meaning alone: its event read (and opened) as the store gives it."""
        events = await asyncio.to_thread(self.store.between, query.agent_id, seq - 1, seq)
        if not events:
            return None  # forgotten by a rewind since it was ranked
        event = events[0]
        return SearchHit(
            seq=event.seq,
            ts=event.ts,
            kind=event.kind,
            code=event.code,
            excerpt=search.excerpt(event.text, search.words(query.text)),
        )

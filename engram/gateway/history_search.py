"""SearchHistory: the same full-text search as the `recall` tool, from a client.

The store answers for archived events; the events the workflow still holds (newer than its
archive watermark) are matched here, in memory, and come first on the first page.
"""

from __future__ import annotations

import asyncio

from google.protobuf.timestamp_pb2 import Timestamp

from engram.gateway.errors import invalid
from engram.messages import timestamp
from engram.transcripts import SearchStore
from engram.transcripts.search import (
    SearchHit,
    SearchPage,
    SearchQuery,
    excerpt,
    index_texts,
    matches,
    words,
)
from engram.v1 import agent_pb2
from engram.workflows.types import EventsPage


def query_of(request: agent_pb2.SearchHistoryRequest, agent_id: str) -> SearchQuery:
    if not words(request.query):
        raise invalid("query must have at least one word")
    if request.page < 0 or request.from_sequence < 0:
        raise invalid("page and from_sequence must not be negative")
    query = SearchQuery(
        agent_id=agent_id,
        text=request.query,
        from_sequence=request.from_sequence,
        since=_seconds(request, "since"),
        until=_seconds(request, "until"),
    )
    query.offset = request.page * query.limit
    return query


async def search(store: SearchStore, query: SearchQuery, held: EventsPage) -> SearchPage:
    """The page of hits: on the first, the held events' matches, newest first, then the store's."""
    page = await asyncio.to_thread(store.search, query)
    if query.offset:
        return page
    query_words = words(query.text)
    recent = [
        SearchHit(seq=e.seq, ts=e.ts, kind=e.kind, code=e.code, excerpt=excerpt(text, query_words))
        for e, text in zip(held.events, index_texts(held.events), strict=True)
        if e.seq > max(query.from_sequence, held.archived_through)
        and (not query.since or e.ts >= query.since)
        and (not query.until or e.ts < query.until)
        and matches(text, query_words)
    ]
    hits = sorted(recent, key=lambda h: -h.seq) + page.hits
    return SearchPage(hits=hits[: query.limit], more=page.more or len(hits) > query.limit)


def response(page: SearchPage) -> agent_pb2.SearchHistoryResponse:
    return agent_pb2.SearchHistoryResponse(
        hits=[
            agent_pb2.SearchHit(
                sequence_id=h.seq,
                time=timestamp(h.ts),
                kind=h.kind,
                code=h.code,
                excerpt=h.excerpt,
            )
            for h in page.hits
        ],
        more=page.more,
    )


def _seconds(request: agent_pb2.SearchHistoryRequest, name: str) -> float:
    if not request.HasField(name):
        return 0.0
    moment: Timestamp = getattr(request, name)
    return moment.seconds + moment.nanos / 1e9

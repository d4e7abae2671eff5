"""Reads an agent's transcript where it lives: the store below the archive watermark, the
workflow above it. One reader for Replay, resends and GetHistory."""

from __future__ import annotations

import asyncio

from engram.transcripts import EventStore
from engram.workflows.types import Event, EventsPage, HistoryPage, Turn, TurnResult


class TranscriptReader:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def events_after(self, agent_id: str, seq: int, page: EventsPage) -> list[Event]:
        """Every event after `seq`, given the workflow's page of events after it."""
        return await self._joined(
            agent_id, seq, page.archived_through, page.archived_through, page.events
        )

    async def turn_events(self, agent_id: str, result: TurnResult) -> list[Event]:
        """Every event of an ended turn, given what the workflow still held of it."""
        if not result.first_seq:
            return result.events
        return await self._joined(
            agent_id, result.first_seq - 1, result.last_seq, result.archived_through, result.events
        )

    async def turns(self, agent_id: str, page: HistoryPage) -> list[Turn]:
        """Every turn of the agent, given the workflow's turns and how many precede them."""
        archived = await asyncio.to_thread(self.store.turns, agent_id, page.archived_turns)
        return archived + page.turns

    async def _joined(
        self, agent_id: str, after: int, through: int, watermark: int, held: list[Event]
    ) -> list[Event]:
        """Events in (after, through]: those at or below `watermark` from the store, the rest
        from `held` (what the workflow returned)."""
        if after >= watermark:
            return held
        archived = await asyncio.to_thread(
            self.store.between, agent_id, after, min(through, watermark)
        )
        return archived + [e for e in held if e.seq > watermark]

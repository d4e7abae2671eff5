"""Moves an agent's older stream messages and turns out of workflow state into the store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio import activity

from engram.transcripts import EventStore
from engram.workflows.fork import ForgetInput
from engram.workflows.types import Event, Turn


@dataclass
class ArchiveInput:
    agent_id: str
    events: list[Event]


@dataclass
class TurnsArchiveInput:
    agent_id: str
    first_index: int
    turns: list[Turn]


class ArchiveActivities:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    @activity.defn(name="archive_events")
    async def archive_events(self, request: ArchiveInput) -> int:
        await asyncio.to_thread(self.store.append, request.agent_id, request.events)
        return max((e.seq for e in request.events), default=0)

    @activity.defn(name="archive_turns")
    async def archive_turns(self, request: TurnsArchiveInput) -> None:
        await asyncio.to_thread(
            self.store.append_turns, request.agent_id, request.first_index, request.turns
        )

    @activity.defn(name="forget_after")
    async def forget_after(self, request: ForgetInput) -> None:
        """A rewind: its branch agent holds what is dropped here."""
        await asyncio.to_thread(
            self.store.forget_after, request.agent_id, request.after_seq, request.from_turn
        )

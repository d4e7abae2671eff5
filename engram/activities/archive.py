"""Moves an agent's older stream messages and turns out of workflow state into the store.

Full-text indexing happens in the store's append; embedding (when configured) is only asked for
here and done in the background (engram/embeddings/indexer.py), so archiving is no slower.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from temporalio import activity

from engram.transcripts import EventStore
from engram.workflows.fork import ForgetInput
from engram.workflows.types import Event, Turn

if TYPE_CHECKING:
    # Workflow code imports these activities' inputs: the embeddings client (openai) must stay
    # out of the workflow sandbox.
    from engram.embeddings.indexer import Indexer


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
    def __init__(self, store: EventStore, indexer: Indexer | None = None) -> None:
        self.store = store
        self.indexer = indexer

    @activity.defn(name="archive_events")
    async def archive_events(self, request: ArchiveInput) -> int:
        await asyncio.to_thread(self.store.append, request.agent_id, request.events)
        if self.indexer is not None:
            self.indexer.nudge(request.agent_id)
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

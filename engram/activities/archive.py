"""Moves an agent's older stream messages out of workflow state into the transcript store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio import activity

from engram.transcript_store import TranscriptStore
from engram.workflows.types import Event


@dataclass
class ArchiveInput:
    agent_id: str
    events: list[Event]


class ArchiveActivities:
    def __init__(self, store: TranscriptStore) -> None:
        self.store = store

    @activity.defn(name="archive_events")
    async def archive_events(self, request: ArchiveInput) -> int:
        await asyncio.to_thread(self.store.append, request.agent_id, request.events)
        return max((e.seq for e in request.events), default=0)

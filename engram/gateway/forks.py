"""ForkAgent and RewindAgent: an agent's memory at a point of its transcript, as a new agent or in
place. Nothing is re-run: the transcript is copied, the memory rebuilt (engram/workflows/fork.py).

A rewind is a fork and a reset: first the whole agent, as it is, is forked into a branch agent
(which keeps the forgotten messages readable, through every read of the API), then the agent goes
back to the point in place. Its sequence ids go on from where they were.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import grpc
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from engram import TASK_QUEUE, WORKFLOW_ID_PREFIX
from engram.following import retrying_unprocessed
from engram.gateway import web_ui
from engram.gateway.agent_calls import AgentHandle, events_since, history
from engram.gateway.errors import GatewayError
from engram.gateway.transcript_reader import TranscriptReader
from engram.transcripts import EventStore
from engram.vocabulary import (
    MODEL_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    TENANT_ATTRIBUTE,
    AgentStatus,
    Query,
    Update,
)
from engram.workflows import fork as point
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import AgentState, Event, Turn


class Forks:
    def __init__(self, client: Client, store: EventStore) -> None:
        self.client = client
        self.store = store
        self.reader = TranscriptReader(store)

    async def fork(self, handle: AgentHandle, at: int, tenant: str) -> str:
        """Fork the agent after message `at`; the new agent's id."""
        transcript = await self._read(handle)
        return await self._start(transcript, transcript.rebuilt(at), tenant)

    async def rewind(self, handle: AgentHandle, to: int, tenant: str) -> str:
        """Rewind the agent to message `to`; the branch agent's id."""
        transcript = await self._read(handle)
        state = transcript.state
        if state.status == AgentStatus.DELETED:
            raise GatewayError(grpc.StatusCode.FAILED_PRECONDITION, "the agent has been deleted")
        rebuilt = transcript.rebuilt(to)
        busy = any(not t.outcome for t in transcript.turns)
        try:
            point.refuse_rewind(state, busy, point.rewind_input(rebuilt, state.next_seq, ""))
        except ValueError as err:
            raise GatewayError(grpc.StatusCode.FAILED_PRECONDITION, str(err)) from None
        # The branch: the agent whole, as it is now.
        everything = transcript.rebuilt(state.next_seq - 1)
        branch = await self._start(transcript, everything, tenant)
        await retrying_unprocessed(
            lambda: handle.execute_update(
                Update.REWIND,
                point.rewind_input(rebuilt, state.next_seq, branch),
                result_type=str,
            )
        )
        return branch

    async def _read(self, handle: AgentHandle) -> Transcript:
        """The agent's state and its whole transcript (store and workflow together)."""
        state: AgentState = await handle.query(Query.STATE, result_type=AgentState)
        agent_id = state.spec.agent_id
        turns_page = await history(handle)
        events_page = await events_since(handle, 0)
        return Transcript(
            state=state,
            turns=await self.reader.turns(agent_id, turns_page),
            events=await self.reader.events_after(agent_id, 0, events_page),
            stored_through=events_page.archived_through,
            stored_turns=turns_page.archived_turns,
        )

    async def _start(self, transcript: Transcript, rebuilt: point.Rebuilt, tenant: str) -> str:
        """Copy the transcript up to the point under a new agent and start it, idle."""
        source = transcript.state
        agent_id = str(uuid.uuid4())
        # What the store holds is copied inside it; the rest (held by the workflow) written.
        stored_through = min(rebuilt.at, transcript.stored_through)
        stored_turns = min(rebuilt.archived_turns, transcript.stored_turns)
        await asyncio.to_thread(
            self.store.copy_through, source.spec.agent_id, agent_id, stored_through, stored_turns
        )
        held = [e for e in transcript.events if stored_through < e.seq <= rebuilt.at]
        await asyncio.to_thread(self.store.append, agent_id, held)
        await asyncio.to_thread(
            self.store.append_turns,
            agent_id,
            stored_turns,
            transcript.turns[stored_turns : rebuilt.archived_turns],
        )
        state = point.fork_state(source, rebuilt, agent_id, time.time(), rebuilt.at)
        spec = state.spec
        attributes = [
            SearchAttributePair(STATUS_ATTRIBUTE, AgentStatus.IDLE),
            SearchAttributePair(MODEL_ATTRIBUTE, spec.model),
        ]
        if tenant:
            attributes.append(SearchAttributePair(TENANT_ATTRIBUTE, tenant))
        await self.client.start_workflow(
            AgentWorkflow.run,
            state,
            id=WORKFLOW_ID_PREFIX + agent_id,
            task_queue=TASK_QUEUE,
            memo={
                "goal": spec.goal,
                "model": spec.model,
                "created_at": state.created_at,
                "metadata": spec.metadata,
                "tenant": tenant,
                "forked_from": spec.forked_from,
                "fork_sequence": spec.fork_sequence,
            },
            search_attributes=TypedSearchAttributes(attributes),
            static_summary=web_ui.summary(spec),
            static_details=web_ui.details(spec, state.tools, tenant),
        )
        return agent_id


@dataclass
class Transcript:
    """An agent's state and whole transcript; the store holds its events through
    `stored_through` and its first `stored_turns` turns, the workflow the rest."""

    state: AgentState
    turns: list[Turn]
    events: list[Event]
    stored_through: int
    stored_turns: int

    def rebuilt(self, at: int) -> point.Rebuilt:
        last = self.state.next_seq - 1
        if at < 0 or at > last:
            raise GatewayError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the point must be a sequence id from 0 to {last}, the agent's newest message",
            )
        try:
            return point.rebuild(self.state, self.turns, self.events, at)
        except point.PointInsideTurn as err:
            raise GatewayError(grpc.StatusCode.FAILED_PRECONDITION, str(err)) from None

"""Keeping an agent's state small, whatever its age: compaction and archiving.

Between turns (and between a run's steps) the workflow folds its oldest turns into a running
summary written by the model, moves them to the transcript store, and moves older stream events
there too (a claim check), so the state each run starts from stays bounded over months.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from engram.activities.archive import ArchiveActivities, ArchiveInput, TurnsArchiveInput
from engram.activities.llm_stream import LLMActivities
from engram.workflows import patches
from engram.workflows.events import EventLog
from engram.workflows.ledger import TurnLedger
from engram.workflows.llm_outcome import LLM_RETRY
from engram.workflows.prompt import (
    context_budget,
    estimate_tokens,
    newest_that_fit,
    system_message,
    turn_messages,
)
from engram.workflows.tokens import CHARS_PER_TOKEN, TextCounter, cl100k, estimated, has_tokenizer
from engram.workflows.types import AgentState, SummaryRequest

# Stream events kept in workflow state before older ones go to the transcript store.
EVENTS_IN_STATE = 500
ARCHIVE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))


class Maintenance:
    def __init__(self, state: AgentState, ledger: TurnLedger, log: EventLog) -> None:
        self.state = state
        self.ledger = ledger
        self.log = log

    def counter(self) -> TextCounter:
        """How this agent's tokens are counted."""
        # Agents whose history was made with the estimate keep it when they replay.
        if has_tokenizer(self.state.spec.model) and patches.check(patches.MODEL_TOKENIZER):
            return cl100k
        return estimated

    async def between_turns(self) -> None:
        """Keep the state small: compact the conversation, archive stream events."""
        if self._conversation_tokens() > context_budget(self.state.spec) * 3 // 4:
            await self._compact()
        if self.events_pile_up():
            await self.archive_events()

    def events_pile_up(self) -> bool:
        return len(self.state.events) > EVENTS_IN_STATE

    async def archive_events(self) -> None:
        """Move the stream events held so far to the transcript store (claim check).

        A notice emitted meanwhile is newer than what is archived and stays.
        """
        through = await workflow.execute_activity_method(
            ArchiveActivities.archive_events,
            ArchiveInput(self.state.spec.agent_id, list(self.state.events)),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=ARCHIVE_RETRY,
        )
        self.log.drop_through(through)

    def _conversation_tokens(self) -> int:
        head = system_message(self.state.spec, self.state.summary, self.state.notes)
        messages = turn_messages(self.state.turns) + ([head] if head else [])
        count = self.counter()
        return sum(estimate_tokens(m, count) for m in messages)

    async def _compact(self) -> None:
        """Fold the oldest turns into the running summary and move them to the store.

        Keeps the newest turns that fit in half the budget verbatim. If the summary cannot be
        made now (the LLM is down), nothing changes: the prompt is trimmed instead, and the next
        turn tries again.
        """
        state = self.state
        turns = state.turns
        room = context_budget(state.spec) // 2
        old = turns[: len(turns) - newest_that_fit(turns, room, self.counter())]
        if not old:
            return
        try:
            summary = await workflow.execute_activity_method(
                LLMActivities.summarize,
                SummaryRequest(state.spec.model, state.summary, turn_messages(old)),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=LLM_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("could not summarize older turns; will retry next turn")
            return
        limit = context_budget(state.spec) // 4 * CHARS_PER_TOKEN
        if len(summary) > limit:
            # A summary must leave room for the conversation itself.
            workflow.logger.warning("summary of %d chars cut to %d", len(summary), limit)
            summary = summary[:limit]
        archived = old
        if patches.check(patches.FORK_SUMMARIES):
            # Summaries are otherwise not kept: this one is what a fork before the next
            # compaction remembers of these turns and those before.
            archived = [*old[:-1], replace(old[-1], summary_after=summary)]
        await workflow.execute_activity_method(
            ArchiveActivities.archive_turns,
            TurnsArchiveInput(state.spec.agent_id, state.archived_turns, archived),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=ARCHIVE_RETRY,
        )
        state.summary = summary
        self.ledger.forget_oldest(len(old))

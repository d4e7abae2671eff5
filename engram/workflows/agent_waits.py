"""One agent waiting on another's turn, in workflow code: no worker slot is held while it waits.

A call to another agent (`agent_<id>`, `create_helper`) sends its task with the short
`delegate_task` activity, through the other agent's `delegate` update, which answers at once and
keeps the caller's address (`Sender`) in the other agent's state. When that turn ends the other
agent signals the caller `agent_answered` with how it ended (`Senders.tell`), and the call, asleep
on a condition (`Calls.wait`), wakes with the answer. Any number of calls can wait so, for as long
as the other agents take: they hold timers and state, never an activity.

In case the signal never comes (the other agent was terminated, or its worker runs a release
without this), the call checks on the turn every CHECK_EVERY_SECONDS with the short
`check_delegation` activity. A call cancelled while it waits withdraws its task
(`withdraw_delegation`), as the tool activity did before.

A scheduled wake-up (engram/workflows/wake_up.py) waits on the run it started the same way: its
`follow_run` update is answered at once and keeps the wake-up's workflow id in the agent's state
(`Senders.follow`); when the run ends the agent signals it `run_ended`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from engram import WORKFLOW_ID_PREFIX
from engram.tools import ToolCallInput, ToolCallOutput
from engram.tools.agents import delegated_message_id
from engram.vocabulary import Signal, TurnOutcome, WakeUpOutcome
from engram.workflows.ledger import TurnLedger
from engram.workflows.types import (
    AgentAnswer,
    AgentState,
    Asked,
    DelegateInput,
    FollowRunInput,
    RunEnded,
    Submitted,
    Turn,
)

# The activities (engram/activities/delegation.py), by name: that module imports this one.
SUBMIT_ACTIVITY = "delegate_task"
CHECK_ACTIVITY = "check_delegation"
WITHDRAW_ACTIVITY = "withdraw_delegation"
CHECK_EVERY_SECONDS = 300
# Each activity only talks to Temporal: a minute is plenty, and a few tries ride out a blip.
SHORT = timedelta(minutes=1)
SHORT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=5)
MAX_REPLY_CHARS = 64_000


class Calls:
    """The caller's side: its calls waiting on other agents, and the answers signalled to it."""

    def __init__(self) -> None:
        self.answers: dict[str, AgentAnswer] = {}
        # Calls waiting now, by call id: an answer for any other call is stale and dropped.
        self.waiting: set[str] = set()

    def answered(self, answer: AgentAnswer) -> None:
        """(The `agent_answered` signal.)"""
        if answer.call_id in self.waiting:
            self.answers[answer.call_id] = answer

    async def wait(
        self, call: ToolCallInput, timeout_seconds: float, stopping: Callable[[], bool]
    ) -> ToolCallOutput | None:
        """The other agent's answer as the call's result; None if the call was cancelled
        (`stopping`) meanwhile: its task was withdrawn."""
        self.waiting.add(call.call_id)
        try:
            return await self._wait(call, timeout_seconds, stopping)
        finally:
            self.waiting.discard(call.call_id)
            self.answers.pop(call.call_id, None)

    async def _wait(
        self, call: ToolCallInput, timeout_seconds: float, stopping: Callable[[], bool]
    ) -> ToolCallOutput | None:
        try:
            submitted = await workflow.execute_activity(
                SUBMIT_ACTIVITY,
                call,
                result_type=Submitted,
                summary=f"{call.name} ({call.call_id})",
                start_to_close_timeout=SHORT,
                retry_policy=SHORT_RETRY,
            )
        except ActivityError as err:
            return _error(f"tool {call.name} did not finish: {err.cause or err}")
        if submitted.refused:
            return _error(submitted.refused)
        asked = Asked(
            agent_id=submitted.agent_id,
            message_id=delegated_message_id(call.agent_id, call.call_id),
            call_id=call.call_id,
        )
        deadline = workflow.now() + timedelta(seconds=timeout_seconds)
        answer = submitted.answer
        while answer is None and not stopping():
            left = (deadline - workflow.now()).total_seconds()
            if left <= 0:
                return _error(f"tool {call.name} timed out after {timeout_seconds:g} s")
            try:
                await workflow.wait_condition(
                    lambda: call.call_id in self.answers or stopping(),
                    timeout=timedelta(seconds=min(left, CHECK_EVERY_SECONDS)),
                )
                answer = self.answers.get(call.call_id)
            except TimeoutError:
                answer = await _check(asked)
        if answer is None:
            await _withdraw(asked)
            return None
        return _output(asked.agent_id, answer)


class Senders:
    """The side of the agent asked: whom to tell when a delegated task's turn ends."""

    def __init__(self, state: AgentState, ledger: TurnLedger) -> None:
        self.state = state
        self.ledger = ledger

    def take(self, task: DelegateInput) -> AgentAnswer:
        """(The `delegate` update, once its message is queued.) The answer now if the turn has
        ended already (a resend); otherwise the sender is signalled when it ends."""
        answer = self._answer(task.message_id, task.sender.call_id)
        if answer is None:
            self.state.senders[task.message_id] = task.sender
            return AgentAnswer(call_id=task.sender.call_id, message_id=task.message_id)
        return answer

    def follow(self, follow: FollowRunInput) -> RunEnded:
        """(The `follow_run` update.) How the run ended if it has already; otherwise the wake-up
        is signalled when it ends."""
        ended = self._run_ended(follow.run_id)
        if ended is not None:
            return ended
        self.state.run_followers[follow.run_id] = follow.workflow_id
        return RunEnded(run_id=follow.run_id)

    def followers_due(self) -> bool:
        """A followed run has ended outside a turn (cancelled while it waited for its user):
        the agent's loop wakes to tell its wake-up."""
        return any(self._run_ended(run_id) for run_id in self.state.run_followers)

    async def tell(self) -> None:
        """Signal every sender whose task's turn has ended, and every wake-up whose run has
        (nothing to await if none has: old histories, which have neither, issue no command
        here)."""
        due: list[tuple[str, str, AgentAnswer | RunEnded]] = []
        for message_id, sender in self.state.senders.items():
            answer = self._answer(message_id, sender.call_id)
            if answer is not None:
                due.append((WORKFLOW_ID_PREFIX + sender.agent_id, Signal.AGENT_ANSWERED, answer))
        for run_id, workflow_id in self.state.run_followers.items():
            ended = self._run_ended(run_id)
            if ended is not None:
                due.append((workflow_id, Signal.RUN_ENDED, ended))
        if not due:
            return
        for _, _, told in due:
            if isinstance(told, RunEnded):
                del self.state.run_followers[told.run_id]
            else:
                del self.state.senders[told.message_id]
        # At once, not one after another: a deleted agent may owe many senders. A sender that no
        # longer exists fails its signal; the rest are sent all the same.
        await asyncio.gather(
            *(
                workflow.get_external_workflow_handle(workflow_id).signal(signal, told)
                for workflow_id, signal, told in due
            ),
            return_exceptions=True,
        )

    def _run_ended(self, run_id: str) -> RunEnded | None:
        """How the run ended, or None while it goes on (or waits in the queue, or for its
        user)."""
        ledger = self.ledger
        if ledger.deleting:
            return RunEnded(run_id=run_id, outcome=WakeUpOutcome.AGENT_GONE)
        run = self.state.run
        if run is not None and run.run_id == run_id:
            return None
        turn = ledger.find(run_id)
        if turn is None:
            if ledger.is_queued(run_id):
                return None
            return RunEnded(run_id=run_id, outcome=WakeUpOutcome.AGENT_GONE)
        return RunEnded(run_id=run_id, outcome=turn.outcome) if turn.outcome else None

    def _answer(self, message_id: str, call_id: str) -> AgentAnswer | None:
        """How the message's turn ended, or None while it has not."""
        ledger = self.ledger
        turn = ledger.find(message_id)
        if turn is not None and turn.outcome == TurnOutcome.JOINED:
            # Taken into another turn (double texting): that turn's answer is its answer.
            turn = ledger.find(turn.joined_to)
        if turn is not None and not turn.outcome:
            return None
        if turn is None:
            if ledger.is_queued(message_id):
                return None
            why = (
                "the task was withdrawn"
                if message_id in ledger.withdrawn
                else "it was deleted first"
                if ledger.deleting
                else "its turn is no longer kept"
            )
            return AgentAnswer(
                call_id=call_id, message_id=message_id, outcome=TurnOutcome.FAILED, error=why
            )
        return answer_of(turn, call_id, message_id)


def answer_of(turn: Turn, call_id: str, message_id: str) -> AgentAnswer:
    """The answer `turn` gives the call that sent `message_id` (the turn's own, or one that
    joined it)."""
    why = turn.error if turn.outcome != TurnOutcome.FAILED else f"it failed: {turn.error}"
    return AgentAnswer(
        call_id=call_id,
        message_id=message_id,
        outcome=turn.outcome,
        reply=turn.reply if turn.outcome == TurnOutcome.COMPLETED else "",
        error="" if turn.outcome == TurnOutcome.COMPLETED else why,
    )


async def _check(asked: Asked) -> AgentAnswer | None:
    try:
        answer = await workflow.execute_activity(
            CHECK_ACTIVITY,
            asked,
            result_type=AgentAnswer,
            start_to_close_timeout=SHORT,
            retry_policy=SHORT_RETRY,
        )
    except ActivityError:
        return None  # Temporal unreachable for a while: look again at the next check
    return answer if answer.outcome else None


async def _withdraw(asked: Asked) -> None:
    try:
        await workflow.execute_activity(
            WITHDRAW_ACTIVITY, asked, start_to_close_timeout=SHORT, retry_policy=SHORT_RETRY
        )
    except ActivityError:
        workflow.logger.warning("could not withdraw %s from %s", asked.message_id, asked.agent_id)


def _output(agent_id: str, answer: AgentAnswer) -> ToolCallOutput:
    if answer.outcome == TurnOutcome.COMPLETED:
        reply = answer.reply
        if len(reply) > MAX_REPLY_CHARS:
            reply = (
                reply[:MAX_REPLY_CHARS]
                + f"\n[output cut at {MAX_REPLY_CHARS} of {len(answer.reply)} characters]"
            )
        return ToolCallOutput(output=reply)
    why = "its turn was cancelled" if answer.outcome == TurnOutcome.CANCELLED else answer.error
    return _error(f"agent {agent_id} did not answer: {why}")


def _error(message: str) -> ToolCallOutput:
    return ToolCallOutput(output=message, is_error=True, error_message=message)

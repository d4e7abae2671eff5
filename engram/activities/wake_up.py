"""What a scheduled wake-up asks of Temporal: its schedule's past, and the agent's run.

A workflow cannot send an update to another workflow, nor read a schedule, so the wake-up
workflow (engram/workflows/wake_up.py) does both through these activities, with the worker's
client. None of them waits for the run: the agent's `follow_run` update answers at once and the
agent signals the wake-up when the run ends (an update that waited would hold off the agent's
continue-as-new for as long as the run lasts, and a run may last days); `check_run` looks at the
run once, in case that signal never comes.

Before that (and still for histories that scheduled it) `watch_run` waited, polling queries from a
heartbeating activity that held a worker's slot for as long as the run lasted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from temporalio import activity
from temporalio.client import (
    Client,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode

from engram import WORKFLOW_ID_PREFIX
from engram.following import retrying_unprocessed
from engram.vocabulary import ErrorType, Query, Update, WakeUpOutcome
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import AgentInfo, FollowRunInput, HistoryPage, RunEnded, RunInput

COVERED_UNTIL = "covered_until"
"""Memo key of a wake-up workflow: when the newest run of its schedule started (seconds since the
epoch). A firing due before then was covered by that run."""

# Polls start quick, for the short runs most wake-ups make, and slow down for long ones.
FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 5.0


def poll_delay(elapsed: float) -> float:
    return min(MAX_POLL_SECONDS, FIRST_POLL_SECONDS + elapsed / 10)


@dataclass
class FiringQuery:
    schedule_id: str
    # When this firing was due, in seconds since the epoch.
    slot: float


@dataclass
class Firing:
    """What the schedule says of a firing, now."""

    # COVERED_UNTIL of the schedule's previous wake-up, if it had one.
    covered_until: float | None
    # The schedule keeps a firing that finds the agent busy (buffer_one), rather than dropping it.
    waits_if_busy: bool


@dataclass
class StartRun:
    agent_id: str
    schedule_id: str
    run_id: str
    instructions: str
    waits_if_busy: bool


@dataclass
class Started:
    # WOKE once the run is started (or queued), else why not.
    outcome: str
    # When it was asked for, in seconds since the epoch.
    at: float = 0.0


@dataclass
class WatchRun:
    agent_id: str
    run_id: str


@dataclass
class FollowRun:
    agent_id: str
    run_id: str
    # The wake-up's own workflow, which the agent signals when the run ends.
    workflow_id: str


class WakeUpActivities:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="wake_up_firing")
    async def firing(self, query: FiringQuery) -> Firing:
        """The schedule's policy and what its previous wake-up covered."""
        try:
            description = await self.client.get_schedule_handle(query.schedule_id).describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return Firing(covered_until=None, waits_if_busy=False)  # deleted since it fired
        waits = description.schedule.policy.overlap in (
            ScheduleOverlapPolicy.BUFFER_ONE,
            ScheduleOverlapPolicy.BUFFER_ALL,
        )
        earlier = [
            a for a in description.info.recent_actions if a.scheduled_at.timestamp() < query.slot
        ]
        previous = max(earlier, key=lambda a: a.scheduled_at, default=None)
        workflow_id = getattr(previous.action, "workflow_id", "") if previous else ""
        if not workflow_id:
            return Firing(covered_until=None, waits_if_busy=waits)
        try:
            memo = await (await self.client.get_workflow_handle(workflow_id).describe()).memo()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return Firing(covered_until=None, waits_if_busy=waits)  # past the retention period
        covered = memo.get(COVERED_UNTIL)
        return Firing(
            covered_until=float(covered) if covered is not None else None, waits_if_busy=waits
        )

    @activity.defn(name="wake_up_start_run")
    async def start_run(self, request: StartRun) -> Started:
        """Start the run on the agent, once whatever happens: the run id makes a second start of
        the same firing a resend. An agent busy with another run is waited for, or not."""
        handle = self._agent(request.agent_id)
        begun = time.monotonic()
        while True:
            if not await _running(handle):
                return await self._gone(request)
            run = (await handle.query(Query.DESCRIBE, result_type=AgentInfo)).run
            if run is not None and run.run_id == request.run_id:
                return Started(WakeUpOutcome.WOKE, run.started_at)  # started by an earlier try
            if run is None:
                at = time.time()
                try:
                    await handle.execute_update(
                        Update.START_RUN,
                        RunInput(run_id=request.run_id, instructions=request.instructions),
                        result_type=str,
                    )
                    return Started(WakeUpOutcome.WOKE, at)
                except RPCError as err:
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise
                    return await self._gone(request)  # ended a moment ago
                except WorkflowUpdateFailedError as err:
                    # Refused: a run started meanwhile, or the agent is being deleted (then the
                    # next look finds it gone).
                    cause = err.cause
                    if not (
                        isinstance(cause, ApplicationError)
                        and cause.type == ErrorType.FAILED_PRECONDITION
                    ):
                        raise
            if not request.waits_if_busy:
                return Started(WakeUpOutcome.BUSY)
            await _pause(time.monotonic() - begun)

    @activity.defn(name="wake_up_follow_run")
    async def follow_run(self, follow: FollowRun) -> str:
        """Ask the agent to signal this wake-up when the run ends; the run's outcome if it has
        ended already, else "". An agent that cannot take the request (gone, or running a
        release without it) is looked at once instead: the wake-up's checks do the rest."""
        handle = self._agent(follow.agent_id)
        request = FollowRunInput(run_id=follow.run_id, workflow_id=follow.workflow_id)
        try:
            ended: RunEnded = await retrying_unprocessed(
                lambda: handle.execute_update(Update.FOLLOW_RUN, request, result_type=RunEnded)
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return await _look(handle, follow.run_id)
        except WorkflowUpdateFailedError as err:
            activity.logger.info("agent %s cannot follow runs: %s", follow.agent_id, err.cause)
            return await _look(handle, follow.run_id)
        return ended.outcome

    @activity.defn(name="wake_up_check_run")
    async def check_run(self, watch: WatchRun) -> str:
        """The run's outcome (or AGENT_GONE) if it has ended, else ""."""
        return await _look(self._agent(watch.agent_id), watch.run_id)

    @activity.defn(name="wake_up_watch_run")
    async def watch_run(self, watch: WatchRun) -> str:
        """Wait for the run to end; its outcome (or AGENT_GONE)."""
        handle = self._agent(watch.agent_id)
        begun = time.monotonic()
        while not (outcome := await _look(handle, watch.run_id)):
            await _pause(time.monotonic() - begun)
        return outcome

    def _agent(self, agent_id: str) -> WorkflowHandle[AgentWorkflow, str]:
        return self.client.get_workflow_handle_for(AgentWorkflow.run, WORKFLOW_ID_PREFIX + agent_id)

    async def _gone(self, request: StartRun) -> Started:
        """A deleted (or never created) agent: nothing for the schedule to wake, ever again."""
        try:
            await self.client.get_schedule_handle(request.schedule_id).delete()
        except RPCError as missing:
            if missing.status != RPCStatusCode.NOT_FOUND:
                raise
        activity.logger.info(
            "schedule %s deleted: its agent %s is gone", request.schedule_id, request.agent_id
        )
        return Started(WakeUpOutcome.AGENT_GONE)


async def _running(handle: WorkflowHandle[AgentWorkflow, str]) -> bool:
    """The agent exists and has not ended (it continues as new: the handle follows)."""
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return description.status == WorkflowExecutionStatus.RUNNING


async def _look(handle: WorkflowHandle[AgentWorkflow, str], run_id: str) -> str:
    """The run's outcome (or AGENT_GONE) if it has ended, else ""."""
    # A terminated agent's last state may show the run forever: ask Temporal first.
    if not await _running(handle):
        return WakeUpOutcome.AGENT_GONE
    info: AgentInfo = await handle.query(Query.DESCRIBE, result_type=AgentInfo)
    if info.run is None or info.run.run_id != run_id:
        page: HistoryPage = await handle.query(Query.HISTORY, result_type=HistoryPage)
        turn = next((t for t in page.turns if t.message_id == run_id), None)
        if turn is not None and turn.outcome:
            return turn.outcome
        if turn is None and not info.queued_messages:
            return WakeUpOutcome.AGENT_GONE  # dropped from the queue by a delete
    return ""


async def _pause(elapsed: float) -> None:
    """Between two looks at the agent. A worker shutting down does not wait for a run to end:
    the attempt fails at once, and another worker's takes over the wait."""
    activity.heartbeat()
    try:
        await asyncio.wait_for(activity.wait_for_worker_shutdown(), poll_delay(elapsed))
    except TimeoutError:
        return
    raise ApplicationError("the worker is shutting down", category=ApplicationErrorCategory.BENIGN)

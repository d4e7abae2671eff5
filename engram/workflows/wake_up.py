"""A scheduled wake-up: what a schedule's firing does to its agent.

Each schedule (engram/gateway/schedules.py) starts one of these per firing, with Temporal's
guarantee of one workflow per due time. It starts a run on the agent whose id is made from the
schedule's name and that time, so a firing carried out twice is one run, and then waits for the
run to end: Temporal's overlap policy, which looks at whether the previous firing's workflow is
still running, then means "while the agent works on this schedule's run".

The wake-up waits for the run in workflow code, holding no worker slot however long the run
lasts: the agent signals it `run_ended` (it asked with the short `follow_run` activity), and in
case no signal comes (the agent terminated, or on a release without `follow_run`) the short
`check_run` activity looks at the run, soon at first and then every CHECK_MAX_SECONDS at most.

A firing whose time came before the previous wake-up's run started does nothing: that run did its
work. This is what makes several times missed while the engine was down (or while a wake-up
waited for the agent) one wake-up, not a burst of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from engram import WORKFLOW_ID_PREFIX
    from engram.activities.wake_up import (
        COVERED_UNTIL,
        FiringQuery,
        FollowRun,
        StartRun,
        WakeUpActivities,
        WatchRun,
    )
    from engram.vocabulary import SCHEDULED_START_ATTRIBUTE, Signal, WakeUpOutcome
from engram.workflows import patches
from engram.workflows.types import RunEnded

Asked = TypeVar("Asked", FollowRun, WatchRun)

SCHEDULE_MARK = "-wake-"
RUN_PREFIX = "wake"
# Waiting for the agent can take as long as its run: the activities heartbeat, and a lost worker
# is noticed within the heartbeat timeout.
WAIT_TIMEOUT = timedelta(days=1)
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
WAIT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
# A wake-up cancelled (its schedule deleted) ends once its activity has stopped waiting.
WAIT_CANCELLED = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
# The checks in case the agent's signal never comes: the first soon after the run started (most
# runs are short), then further apart, up to CHECK_MAX_SECONDS: the signal is how a wake-up
# learns, and a run of months adds about 200 events a day to the wake-up's history.
CHECK_FIRST_SECONDS = 1
CHECK_MAX_SECONDS = 3600
# Follow and check only talk to Temporal: a minute is plenty, and retries ride out a blip.
SHORT = timedelta(minutes=1)
SHORT_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=5)


def check_delay(waited: float) -> float:
    """Seconds to the next check, `waited` seconds after the wake-up began waiting."""
    return min(CHECK_MAX_SECONDS, max(CHECK_FIRST_SECONDS, waited / 10))


def schedule_id(agent_id: str, name: str) -> str:
    """The Temporal schedule id: the agent's workflow id first, so the two sort together."""
    return f"{schedule_prefix(agent_id)}{name}"


def schedule_prefix(agent_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{agent_id}{SCHEDULE_MARK}"


def run_id(name: str, slot: datetime) -> str:
    """The run's id (its message_id on the agent's stream): the schedule's name and due time."""
    return f"{RUN_PREFIX}:{name}:{slot.astimezone(UTC):%Y%m%dT%H%M%SZ}"


@dataclass
class WakeUp:
    """The schedule's fixed input to every firing."""

    agent_id: str
    name: str
    instructions: str = ""


@dataclass
class WakeUpResult:
    outcome: str
    run_id: str
    # How the run ended (a TurnOutcome), when there was one.
    run_outcome: str = ""


@workflow.defn(name="WakeUpWorkflow")
class WakeUpWorkflow:
    def __init__(self) -> None:
        # What the agent signalled of the runs it ended (only this wake-up's run is waited on).
        self.ended: dict[str, str] = {}

    @workflow.run
    async def run(self, wake: WakeUp) -> WakeUpResult:
        info = workflow.info()
        slot = info.typed_search_attributes.get(SCHEDULED_START_ATTRIBUTE) or info.start_time
        run = run_id(wake.name, slot)
        schedule = schedule_id(wake.agent_id, wake.name)
        firing = await workflow.execute_activity_method(
            WakeUpActivities.firing,
            FiringQuery(schedule, slot.timestamp()),
            start_to_close_timeout=timedelta(seconds=30),
        )
        covered = firing.covered_until
        if covered is not None and slot.timestamp() < covered:
            return self._ended(WakeUpResult(WakeUpOutcome.COVERED, run), covered)
        started = await workflow.execute_activity_method(
            WakeUpActivities.start_run,
            StartRun(wake.agent_id, schedule, run, wake.instructions, firing.waits_if_busy),
            start_to_close_timeout=WAIT_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=WAIT_RETRY,
            cancellation_type=WAIT_CANCELLED,
        )
        if started.outcome != WakeUpOutcome.WOKE:
            return self._ended(WakeUpResult(started.outcome, run), covered)
        # Recorded before waiting: a firing buffered behind this one reads it once this ends.
        workflow.upsert_memo({COVERED_UNTIL: started.at, "run_id": run})
        if patches.check(patches.WAKE_UP_WAITS_IN_WORKFLOW):
            ended = await self._wait(wake.agent_id, run)
        else:
            ended = await workflow.execute_activity_method(
                WakeUpActivities.watch_run,
                WatchRun(wake.agent_id, run),
                start_to_close_timeout=WAIT_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=WAIT_RETRY,
                cancellation_type=WAIT_CANCELLED,
            )
        return self._ended(WakeUpResult(WakeUpOutcome.WOKE, run, ended), started.at)

    @workflow.signal(name=Signal.RUN_ENDED)
    def run_ended(self, ended: RunEnded) -> None:
        """The agent ended the run this wake-up follows."""
        self.ended[ended.run_id] = ended.outcome

    async def _wait(self, agent_id: str, run: str) -> str:
        """The run's outcome (or AGENT_GONE), once it has ended: asleep on a condition until the
        agent signals, looking at the run now and then in case it never does."""
        outcome = await self._follow(
            WakeUpActivities.follow_run, FollowRun(agent_id, run, workflow.info().workflow_id)
        )
        began = workflow.now()
        while not outcome:
            waited = (workflow.now() - began).total_seconds()
            try:
                await workflow.wait_condition(
                    lambda: run in self.ended, timeout=timedelta(seconds=check_delay(waited))
                )
                outcome = self.ended[run]
            except TimeoutError:
                outcome = await self._follow(WakeUpActivities.check_run, WatchRun(agent_id, run))
        return outcome

    @staticmethod
    async def _follow(
        activity: Callable[[WakeUpActivities, Asked], Awaitable[str]], request: Asked
    ) -> str:
        try:
            outcome: str = await workflow.execute_activity_method(
                activity, request, start_to_close_timeout=SHORT, retry_policy=SHORT_RETRY
            )
        except ActivityError:
            return ""  # Temporal unreachable for a while: look again at the next check
        return outcome

    @staticmethod
    def _ended(result: WakeUpResult, covered_until: float | None) -> WakeUpResult:
        # A firing that started no run passes on what the previous one covered: the next firing
        # compares its time with the newest run's start.
        memo: dict[str, object] = {"outcome": result.outcome}
        if covered_until is not None:
            memo[COVERED_UNTIL] = covered_until
        workflow.upsert_memo(memo)
        return result

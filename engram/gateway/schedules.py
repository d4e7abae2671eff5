"""Recurring wake-ups at the API edge: CreateSchedule, ListSchedules, DeleteSchedule.

Each is a Temporal Schedule, so operators see it, pause it and edit it on the Web UI's Schedules
page, and Temporal keeps it across restarts. Its action starts a WakeUpWorkflow
(engram/workflows/wake_up.py), which starts the agent's run and waits for it to end; Temporal's
overlap policy then decides what a firing does while the agent is busy. The schedule's id begins
with its agent's workflow id; its memo keeps what Temporal itself does not give back (the cron
expressions as written: Temporal turns them into calendar specs).

A firing is the tenant's work like any turn it asks for: its wake-up carries the tenant as its
fairness key, and a schedule fires at most once a minute (`MIN_EVERY`), so a few calls cannot buy
an unbounded stream of runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import grpc
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from engram import TASK_QUEUE
from engram.gateway import web_ui
from engram.gateway.errors import GatewayError, invalid
from engram.gateway.validation import ScheduleRequest
from engram.messages import timestamp
from engram.v1 import agent_pb2
from engram.vocabulary import TENANT_ATTRIBUTE, Overlap
from engram.workflows.wake_up import WakeUp, WakeUpWorkflow, schedule_id, schedule_prefix

# How far back a schedule makes up for times missed while Temporal was down: the wake-up
# workflow turns however many it finds into one.
CATCHUP_WINDOW = timedelta(days=365)
MAX_SCHEDULES_PER_AGENT = 32
# The shortest interval a schedule may fire at; ENGRAM_SCHEDULE_MIN_EVERY (seconds) lowers it for
# tests. A cron expression with a seconds field (7 fields) must name one second, so cron too fires
# at most once a minute.
MIN_EVERY = timedelta(seconds=60)
OVERLAP_POLICIES = {
    Overlap.SKIP: ScheduleOverlapPolicy.SKIP,
    Overlap.BUFFER_ONE: ScheduleOverlapPolicy.BUFFER_ONE,
}


def min_every() -> timedelta:
    configured = os.environ.get("ENGRAM_SCHEDULE_MIN_EVERY", "")
    return timedelta(seconds=float(configured)) if configured else MIN_EVERY


def check_frequency(request: ScheduleRequest, minimum: timedelta) -> None:
    """INVALID_ARGUMENT for a schedule that would fire more often than `minimum` allows."""
    if request.every is not None and request.every < minimum:
        raise invalid(
            f"every must be at least {minimum.total_seconds():g} s (it is "
            f"{request.every.total_seconds():g} s)"
        )
    if minimum < timedelta(minutes=1):
        return
    for cron in request.cron:
        fields = cron.split()
        # Temporal reads 7 fields as second, minute, hour, ...: a seconds field other than one
        # number fires several times a minute.
        if len(fields) == 7 and not fields[0].isdigit():
            raise invalid(
                f"cron {cron!r} fires more than once a minute: a schedule fires at most every "
                f"{minimum.total_seconds():g} s, so its seconds field must be one number"
            )


class Schedules:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.min_every = min_every()

    async def create(
        self, request: ScheduleRequest, agent: WorkflowHandle[Any, Any], tenant: str
    ) -> agent_pb2.Schedule:
        check_frequency(request, self.min_every)
        if (await agent.describe()).status != WorkflowExecutionStatus.RUNNING:
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION, f"agent {request.agent_id} has been deleted"
            )
        if len(await self._ids(request.agent_id)) >= MAX_SCHEDULES_PER_AGENT:
            raise GatewayError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"agent {request.agent_id} already has {MAX_SCHEDULES_PER_AGENT} schedules, the "
                "most it may have: delete one first",
            )
        tenancy = TypedSearchAttributes(
            [SearchAttributePair(TENANT_ATTRIBUTE, tenant)] if tenant else []
        )
        wake = WakeUp(request.agent_id, request.name, request.instructions)
        schedule = Schedule(
            action=ScheduleActionStartWorkflow(
                WakeUpWorkflow.run,
                wake,
                id=schedule_id(request.agent_id, request.name),
                task_queue=TASK_QUEUE,
                typed_search_attributes=tenancy,
                static_summary=web_ui.wake_up_summary(wake),
                # Its tasks take their turn among the tenant's (task queue fairness).
                priority=Priority(fairness_key=tenant) if tenant else Priority.default,
            ),
            spec=ScheduleSpec(
                cron_expressions=request.cron,
                intervals=[ScheduleIntervalSpec(every=request.every)] if request.every else [],
                time_zone_name=request.timezone or None,
            ),
            policy=SchedulePolicy(
                overlap=OVERLAP_POLICIES[request.overlap], catchup_window=CATCHUP_WINDOW
            ),
        )
        memo = {"agent_id": request.agent_id, "name": request.name, "cron": request.cron}
        try:
            handle = await self.client.create_schedule(
                schedule_id(request.agent_id, request.name),
                schedule,
                memo=memo,
                search_attributes=tenancy,
            )
        except ScheduleAlreadyRunningError:
            raise GatewayError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"agent {request.agent_id} already has a schedule named {request.name!r}",
            ) from None
        except RPCError as err:
            # Temporal checks cron expressions and time zones, and says what is wrong.
            if err.status == RPCStatusCode.INVALID_ARGUMENT:
                raise invalid(err.message) from None
            raise
        found = await self._describe(handle.id)
        assert found is not None  # it was just created
        return found

    async def listed(
        self, agent: WorkflowHandle[Any, Any], agent_id: str
    ) -> list[agent_pb2.Schedule]:
        await agent.describe()  # NOT_FOUND for an agent that never was
        found = await asyncio.gather(*(self._describe(i) for i in await self._ids(agent_id)))
        return sorted((s for s in found if s is not None), key=lambda s: s.name)

    async def delete(self, agent: WorkflowHandle[Any, Any], agent_id: str, name: str) -> None:
        await agent.describe()
        if not await self._delete(schedule_id(agent_id, name)):
            raise GatewayError(
                grpc.StatusCode.NOT_FOUND, f"agent {agent_id} has no schedule named {name!r}"
            )

    async def delete_all(self, agent_id: str) -> None:
        """Delete the agent's schedules (those visibility lists yet; a wake-up that finds its agent
        deleted deletes its own schedule)."""
        for found in await self._ids(agent_id):
            await self._delete(found)

    async def _delete(self, found: str) -> bool:
        """Delete the schedule, and cancel its wake-up in progress: one waiting for a busy agent
        would otherwise start a run after its schedule is gone (a run already started goes on).
        False if there was no such schedule."""
        handle = self.client.get_schedule_handle(found)
        try:
            running = (await handle.describe()).info.running_actions
            await handle.delete()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return False
        for action in running:
            workflow_id = getattr(action, "workflow_id", "")
            try:
                await self.client.get_workflow_handle(workflow_id).cancel()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise  # NOT_FOUND: it ended meanwhile
        return True

    async def _ids(self, agent_id: str) -> list[str]:
        # Agent ids are checked UUIDs: nothing in the query needs quoting.
        listed = await self.client.list_schedules(
            f"ScheduleId STARTS_WITH '{schedule_prefix(agent_id)}'"
        )
        return [s.id async for s in listed]

    async def _describe(self, found: str) -> agent_pb2.Schedule | None:
        """The schedule as it is now (with edits made in the Web UI); None once deleted."""
        try:
            description = await self.client.get_schedule_handle(found).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None  # visibility lists it a little longer
            raise
        action = description.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        payloads: Sequence[Payload] = action.args  # as stored, encoded
        [wake] = await self.client.data_converter.decode(payloads, [WakeUp])
        memo = await description.memo()
        spec, state, info = description.schedule.spec, description.schedule.state, description.info
        schedule = agent_pb2.Schedule(
            schedule_id=found,
            agent_id=wake.agent_id,
            name=wake.name,
            cron=memo.get("cron", []),
            instructions=wake.instructions,
            overlap=_overlap_name(description.schedule.policy.overlap),
            timezone=spec.time_zone_name or "",
            fired=info.num_actions,
            paused=state.paused,
            created_at=timestamp(info.created_at.timestamp()),
        )
        if spec.intervals:
            schedule.every.FromTimedelta(spec.intervals[0].every)
        if info.next_action_times and not state.paused:
            schedule.next_fire.CopyFrom(timestamp(info.next_action_times[0].timestamp()))
        return schedule


def _overlap_name(policy: ScheduleOverlapPolicy) -> str:
    """Engram's word for the policy; Temporal's own, lower case, for one set in the Web UI."""
    for name, known in OVERLAP_POLICIES.items():
        if known == policy:
            return str(name)
    return ScheduleOverlapPolicy(policy).name.lower()

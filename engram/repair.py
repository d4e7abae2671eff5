"""`engram agents repair ID [ID ...]`: unwedge agents whose workflow task fails on every retry.

A workflow task that fails is retried for ever, and meanwhile the agent answers nothing (GetAgent
shows it as `needs_attention`). The repair reads why from the end of the agent's history, then
resets the workflow to its last completed workflow task: Temporal starts a new run from that point
on the workers' current code, and re-sends it the signals and updates that came after it. That
mends what the current code no longer does (an oversized payload, which now goes to the blob
store; a bug since fixed), and a task that fails because of something the agent received alone.
The new run is watched until its first workflow task completes, so a repair that did not take is
reported as such. An operator's command, like `engram agents upgrade`: it talks to Temporal, not
to a gateway, so it reaches every tenant's agents.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import (
    EventType,
    ResetReapplyExcludeType,
    ResetReapplyType,
    WorkflowTaskFailedCause,
)
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryReverseRequest,
    ResetWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from engram import WORKFLOW_ID_PREFIX
from engram.temporal_connection import TemporalSettings

POLL_SECONDS = 0.2
PAGE_SIZE = 200

# Causes Temporal or the SDK give for a payload or a task's reply over Temporal's size limits.
_TOO_LARGE: frozenset[WorkflowTaskFailedCause.ValueType] = frozenset(
    {
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_PAYLOADS_TOO_LARGE,
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_GRPC_MESSAGE_TOO_LARGE,
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_BAD_SIGNAL_INPUT_SIZE,
    }
)
_TOO_LARGE_WORDS = ("too large", "exceeds size limit", "size limit exceeded")
_TASK_ENDS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}
_OVERSIZED_NOTE = (
    " (an oversized state or payload: payloads over 128 KiB now go to the blob store, "
    "codec/claim_check.py, so the current code does not write it again)"
)


@dataclass(frozen=True)
class Diagnosis:
    """What the end of a run's history says about its workflow task."""

    problem: str
    """Why its task fails, in words; "" when its last task completed."""
    last_good: int
    """The event id of its last completed workflow task (or of an earlier reset's mark); 0 when
    none ever completed."""
    timed_out: bool = False
    """Its tasks time out rather than fail: no worker takes them, which a reset does not mend."""


@dataclass(frozen=True)
class Repair:
    agent_id: str
    repaired: bool
    """False only when the agent needed repair and did not get it."""
    report: str


async def _reverse_history(
    client: Client, execution: WorkflowExecution
) -> AsyncIterator[HistoryEvent]:
    token = b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace,
                execution=execution,
                maximum_page_size=PAGE_SIZE,
                next_page_token=token,
            )
        )
        for event in page.history.events:
            yield event
        token = page.next_page_token
        if not token:
            return


def _is_reset_mark(event: HistoryEvent) -> bool:
    """Whether `event` is where an earlier reset put this run: a task that completed in the run
    reset from, which this run does again. Resetting to it again keeps all the run kept."""
    return (
        event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and event.workflow_task_failed_event_attributes.cause
        == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
    )


def _failure_text(event: HistoryEvent) -> str:
    failed = event.workflow_task_failed_event_attributes
    cause = WorkflowTaskFailedCause.Name(failed.cause)
    cause = cause.removeprefix("WORKFLOW_TASK_FAILED_CAUSE_").lower().replace("_", " ")
    text = f"{cause}: {failed.failure.message}" if failed.failure.message else cause
    oversized = failed.cause in _TOO_LARGE or any(
        words in failed.failure.message.lower() for words in _TOO_LARGE_WORDS
    )
    return text + (_OVERSIZED_NOTE if oversized else "")


async def diagnose(client: Client, execution: WorkflowExecution, attempt: int) -> Diagnosis:
    """Read the run's history from its end back to its last good point: its last completed
    workflow task, or where a reset put it. Temporal resets to a completed task by doing that task
    again, so the history before it is kept and what the task decided is decided anew. `attempt` is
    the pending workflow task's attempt (0 when none is pending), which counts the failures that
    Temporal does not write to history."""
    newest_failure: HistoryEvent | None = None
    timeouts = 0
    last_good = 0
    async for event in _reverse_history(client, execution):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED or _is_reset_mark(
            event
        ):
            last_good = event.event_id
            break
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            timeouts += 1
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED and newest_failure is None:
            newest_failure = event
    if newest_failure is not None:
        times = f"{attempt} times" if attempt > 1 else "once"
        return Diagnosis(
            f"its workflow task failed {times}: {_failure_text(newest_failure)}", last_good
        )
    if timeouts and attempt > 1:
        return Diagnosis(f"its workflow task timed out {attempt} times", last_good, timed_out=True)
    return Diagnosis("", last_good)


async def repair_agents(
    client: Client, agent_ids: list[str], wait: float, reapply: bool
) -> list[Repair]:
    """Repair each agent in turn: an operator names a few, and each is watched for `wait` s."""
    return [await repair_agent(client, agent_id, wait, reapply) for agent_id in agent_ids]


async def repair_agent(client: Client, agent_id: str, wait: float, reapply: bool) -> Repair:
    workflow_id = WORKFLOW_ID_PREFIX + agent_id
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return Repair(agent_id, False, "not repaired: no agent has this id")
        raise
    if described.status == WorkflowExecutionStatus.COMPLETED:
        return Repair(agent_id, True, "nothing to repair: it was deleted")
    if described.status != WorkflowExecutionStatus.RUNNING:
        status = described.status.name.lower() if described.status else "closed"
        return Repair(
            agent_id,
            False,
            f"not repaired: its workflow has ended ({status}), which resetting a workflow task "
            "does not mend",
        )
    execution = WorkflowExecution(workflow_id=workflow_id, run_id=described.run_id)
    raw = described.raw_description
    attempt = raw.pending_workflow_task.attempt if raw.HasField("pending_workflow_task") else 0
    diagnosis = await diagnose(client, execution, attempt)
    if not diagnosis.problem:
        return Repair(agent_id, True, "nothing to repair: its workflow tasks complete")
    if diagnosis.timed_out:
        return Repair(
            agent_id,
            False,
            f"not repaired: {diagnosis.problem}, which a reset does not mend: are workers "
            "polling its task queue, and do they keep up?",
        )
    if not diagnosis.last_good:
        return Repair(
            agent_id,
            False,
            f"not repaired: {diagnosis.problem}; no workflow task of this run ever completed, so "
            "there is no good point to reset to (`engram agents rm --force` deletes it)",
        )
    new_run = await reset(client, execution, diagnosis, reapply)
    where = (
        f"reset to its last completed workflow task (event {diagnosis.last_good}), "
        f"new run {new_run}"
    )
    after = await diagnose_new_run(client, workflow_id, new_run, wait)
    if after is None:
        return Repair(
            agent_id,
            False,
            f"not repaired: {diagnosis.problem}; {where}, whose first workflow task has not "
            f"completed within {wait:g} s: are workers running?",
        )
    if after.problem:
        hint = (
            "; if a signal or update it received after that point is the cause, `--no-reapply` "
            "resets without them"
            if reapply
            else ""
        )
        return Repair(
            agent_id,
            False,
            f"not repaired: {diagnosis.problem}; {where}, which still fails: {after.problem}{hint}",
        )
    dropped = "" if reapply else " (signals and updates after that point dropped)"
    return Repair(agent_id, True, f"repaired: {diagnosis.problem}; {where}{dropped}")


async def reset(
    client: Client, execution: WorkflowExecution, diagnosis: Diagnosis, reapply: bool
) -> str:
    """Reset the run to its last good point; the new run's id."""
    exclude = (
        []
        if reapply
        else [
            ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
            ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
        ]
    )
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=execution,
            reason=f"engram agents repair: {diagnosis.problem}"[:1000],
            workflow_task_finish_event_id=diagnosis.last_good,
            request_id=str(uuid.uuid4()),
            reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_ALL_ELIGIBLE,
            reset_reapply_exclude_types=exclude,
        )
    )
    return response.run_id


async def diagnose_new_run(
    client: Client, workflow_id: str, run_id: str, wait: float
) -> Diagnosis | None:
    """Once the reset run's newest workflow task has ended (completed, or failed again), what its
    history says; None if none ended within `wait` seconds."""
    execution = WorkflowExecution(workflow_id=workflow_id, run_id=run_id)
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        described = await handle.describe()
        raw = described.raw_description
        pending = raw.pending_workflow_task.attempt if raw.HasField("pending_workflow_task") else 0
        if described.status != WorkflowExecutionStatus.RUNNING:
            # It ended (deleted meanwhile, or continued as new): its tasks completed.
            return Diagnosis("", 1)
        if pending > 1 or await _task_ended_since_reset(client, execution):
            return await diagnose(client, execution, pending)
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)


async def _task_ended_since_reset(client: Client, execution: WorkflowExecution) -> bool:
    """Whether a workflow task ended after the reset's own failed-task marker."""
    async for event in _reverse_history(client, execution):
        if event.event_type in _TASK_ENDS:
            return not _is_reset_mark(event)
    return False


def run_repair(args: argparse.Namespace) -> int:
    code = asyncio.run(_run(args))
    sys.stdout.flush()
    # Skip interpreter teardown, as `engram probe` does: grpc's and Temporal's native threads can
    # crash it, and an operator's script must get the exit code the report gave.
    os._exit(code)


async def _run(args: argparse.Namespace) -> int:
    settings = TemporalSettings.from_args(args)
    try:
        client = await settings.connect()
    except RuntimeError as err:
        print(f"cannot reach Temporal at {settings.address}: {err}")
        return 1
    repairs = await repair_agents(client, list(args.agent_ids), args.wait, not args.no_reapply)
    for repair in repairs:
        print(f"{repair.agent_id}  {repair.report}")
    return 0 if all(r.repaired for r in repairs) else 1

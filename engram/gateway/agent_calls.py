"""Every call the gateway makes to an agent's workflow: its updates, signals and queries.

The servicer speaks to agents only through these functions, so the workflow's handlers (their
names and inputs) are met in this one module.
"""

from __future__ import annotations

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowUpdateHandle,
)
from temporalio.client import WorkflowUpdateStage as Stage

from engram import WORKFLOW_ID_PREFIX
from engram.following import QUERY_TIMEOUT, accepted, patient_query, retrying_unprocessed
from engram.following import turn_ended as turn_ended
from engram.vocabulary import Command, Query, Signal, Update
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import (
    AgentInfo,
    ChatInput,
    ClientToolResult,
    ControlInput,
    Decision,
    EditInput,
    EventsAfterInput,
    EventsPage,
    HistoryPage,
    RelayInput,
    RunInput,
    TurnResult,
)

AgentHandle = WorkflowHandle[AgentWorkflow, str]
# How far back from the end of a wedged agent's history its failed task is looked for.
PROBLEM_SEARCH_EVENTS = 200
AgentCommand = Command | EditInput | Decision | ClientToolResult | RunInput
"""What ControlAgent and a Chat stream may send an agent besides a user message."""


def agent_handle(client: Client, agent_id: str) -> AgentHandle:
    return client.get_workflow_handle_for(AgentWorkflow.run, WORKFLOW_ID_PREFIX + agent_id)


async def send(handle: AgentHandle, command: AgentCommand) -> str:
    """Apply `command` to the agent; its status afterwards."""
    argument: object = command
    if isinstance(command, EditInput):
        update = Update.EDIT
    elif isinstance(command, Decision):
        update = Update.DECIDE
    elif isinstance(command, ClientToolResult):
        update = Update.SUBMIT_TOOL_RESULT
    elif isinstance(command, RunInput):
        update = Update.START_RUN
    else:
        update, argument = Update.CONTROL_AGENT, ControlInput(command=command)
    status: str = await retrying_unprocessed(
        lambda: handle.execute_update(update, argument, result_type=str)
    )
    return status


async def start_chat(handle: AgentHandle, chat: ChatInput) -> WorkflowUpdateHandle[TurnResult]:
    """Submit a user message; returns once the agent has accepted (queued) it."""
    return await accepted(
        lambda: handle.start_update(
            Update.CHAT,
            chat,
            id=f"chat-{chat.message_id}",
            wait_for_stage=Stage.ACCEPTED,
            result_type=TurnResult,
        )
    )


async def delete(handle: AgentHandle) -> None:
    await handle.signal(Signal.DELETE)


async def relay_to(handle: AgentHandle, message_id: str, address: str) -> None:
    """Have the turn in progress send its tokens to the gateway at `address` from now on."""
    await handle.signal(Signal.RELAY_TURN, RelayInput(message_id=message_id, reply_to=address))


async def describe(handle: AgentHandle) -> AgentInfo:
    info: AgentInfo = await handle.query(
        Query.DESCRIBE, result_type=AgentInfo, rpc_timeout=QUERY_TIMEOUT
    )
    return info


async def history(handle: AgentHandle) -> HistoryPage:
    page: HistoryPage = await handle.query(Query.HISTORY, result_type=HistoryPage)
    return page


async def events_since(handle: AgentHandle, seq: int) -> EventsPage:
    return await patient_query(handle, Query.EVENTS_AFTER, EventsAfterInput(seq=seq), EventsPage)


async def task_problem(client: Client, description: WorkflowExecutionDescription) -> str:
    """Why the agent's workflow task keeps failing, as Temporal recorded it; "" when it does not.

    A failing task is retried for ever, and the agent answers no update or query meanwhile, so
    this is read from Temporal: the pending task's attempt, then the newest failed task in the
    history, read from its end."""
    raw = description.raw_description
    if not raw.HasField("pending_workflow_task") or raw.pending_workflow_task.attempt < 2:
        return ""
    request = GetWorkflowExecutionHistoryReverseRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=description.id, run_id=description.run_id),
        maximum_page_size=PROBLEM_SEARCH_EVENTS,
    )
    page = await client.workflow_service.get_workflow_execution_history_reverse(request)
    for event in page.history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed = event.workflow_task_failed_event_attributes
            cause = WorkflowTaskFailedCause.Name(failed.cause)
            cause = cause.removeprefix("WORKFLOW_TASK_FAILED_CAUSE_").lower().replace("_", " ")
            attempts = raw.pending_workflow_task.attempt
            return f"its workflow task failed {attempts} times: {cause}: {failed.failure.message}"
    return f"its workflow task failed {raw.pending_workflow_task.attempt} times"

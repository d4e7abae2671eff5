"""Every call the gateway makes to an agent's workflow: its updates, signals and queries.

The servicer speaks to agents only through these functions, so the workflow's handlers (their
names and inputs) are met in this one module.
"""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateHandle
from temporalio.client import WorkflowUpdateStage as Stage

from engram import WORKFLOW_ID_PREFIX
from engram.following import accepted, patient_query, retrying_unprocessed
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
    info: AgentInfo = await handle.query(Query.DESCRIBE, result_type=AgentInfo)
    return info


async def history(handle: AgentHandle) -> HistoryPage:
    page: HistoryPage = await handle.query(Query.HISTORY, result_type=HistoryPage)
    return page


async def events_since(handle: AgentHandle, seq: int) -> EventsPage:
    return await patient_query(handle, Query.EVENTS_AFTER, EventsAfterInput(seq=seq), EventsPage)

"""Every call the gateway makes to an agent's workflow: its updates, signals and queries.

The servicer speaks to agents only through these functions, so the workflow's handlers (their
names and inputs) are met in this one module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateHandle
from temporalio.client import WorkflowUpdateStage as Stage

from engram import WORKFLOW_ID_PREFIX
from engram.vocabulary import Command
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import (
    AgentInfo,
    ChatInput,
    ClientToolResult,
    Decision,
    EditInput,
    EventsPage,
    HistoryPage,
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
    if isinstance(command, EditInput):
        return await handle.execute_update(AgentWorkflow.edit, command)
    if isinstance(command, Decision):
        return await handle.execute_update(AgentWorkflow.decide, command)
    if isinstance(command, ClientToolResult):
        return await handle.execute_update(AgentWorkflow.submit_tool_result, command)
    if isinstance(command, RunInput):
        return await handle.execute_update(AgentWorkflow.start_run, command)
    return await handle.execute_update(AgentWorkflow.control, command)


async def start_chat(handle: AgentHandle, chat: ChatInput) -> WorkflowUpdateHandle[TurnResult]:
    """Submit a user message; returns once the agent has accepted (queued) it."""
    return await handle.start_update(
        AgentWorkflow.chat, chat, id=f"chat-{chat.message_id}", wait_for_stage=Stage.ACCEPTED
    )


async def turn_ended(
    handle: AgentHandle,
    message_id: str,
    first: Awaitable[TurnResult] | None = None,
) -> TurnResult:
    """The turn's whole record once it has ended. A run that continues as new mid-turn answers
    its waiters "continued": they wait again, on the agent's next run."""
    result = await (first or handle.execute_update(AgentWorkflow.wait_turn, message_id))
    while result.continued:
        # Until the old run has handed over, it answers at once: give it a moment.
        await asyncio.sleep(0.05)
        result = await handle.execute_update(AgentWorkflow.wait_turn, message_id)
    return result


async def delete(handle: AgentHandle) -> None:
    await handle.signal(AgentWorkflow.delete)


async def relay_to(handle: AgentHandle, message_id: str, address: str) -> None:
    """Have the turn in progress send its tokens to the gateway at `address` from now on."""
    await handle.signal(AgentWorkflow.relay_to, args=[message_id, address])


async def describe(handle: AgentHandle) -> AgentInfo:
    return await handle.query(AgentWorkflow.describe)


async def history(handle: AgentHandle) -> HistoryPage:
    return await handle.query(AgentWorkflow.history)


async def events_since(handle: AgentHandle, seq: int) -> EventsPage:
    return await handle.query(AgentWorkflow.events_since, seq)

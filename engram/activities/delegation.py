"""Delegation: a tool call answered by another Engram agent.

Since the wait-in-workflow patch a call takes three short activities, and waits in workflow code
(engram/workflows/agent_waits.py) holding no worker slot: `delegate_task` sends the task through
the other agent's `delegate` update, which answers at once and signals the caller when the turn
ends; `check_delegation` looks at the turn now and then, in case that signal never comes (the
other agent terminated); `withdraw_delegation` withdraws the task when the call is cancelled.

Before it (and still for histories that scheduled it) the whole call was one tool activity: the
call's task goes to the other agent as a user message, through its workflow's `chat` update,
under a message id made from the calling agent's id and the call's: a retried attempt finds the
turn the first attempt started instead of starting a second one. The attempt waits for that turn
(heartbeating, as every tool activity does), and its reply is the call's result. If the call is
cancelled (the caller's turn or run was cancelled, or the caller deleted) the message is withdrawn:
the other agent's turn is cancelled, or the message dropped from its queue.

`create_helper` first starts a new agent for the sub-task, a sub-agent of the caller (same tenant
and model), through the same code as CreateAgent, with an id made from the call: a retried attempt
finds the helper the first one started.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from engram import WORKFLOW_ID_PREFIX
from engram.agent_start import NewAgent, link_to_parent, start_agent
from engram.following import (
    TurnGone,
    accepted,
    patient_query,
    retrying_unprocessed,
    turn_ended,
    wait_turn,
)
from engram.tools import ToolCallInput, ToolCallOutput, ToolError
from engram.tools.agents import delegated_message_id, helper_id, referenced_agent
from engram.vocabulary import (
    TENANT_ATTRIBUTE,
    ErrorCode,
    EventKind,
    Query,
    TurnOutcome,
    TurnState,
    Update,
)
from engram.workflows.agent_waits import (
    CHECK_ACTIVITY,
    SUBMIT_ACTIVITY,
    WITHDRAW_ACTIVITY,
    answer_of,
)
from engram.workflows.types import (
    AgentAnswer,
    AgentSpec,
    Asked,
    ChatInput,
    DelegateInput,
    HistoryPage,
    Sender,
    Submitted,
    Turn,
    TurnResult,
    TurnStateInput,
    WithdrawInput,
)

log = logging.getLogger(__name__)

# As much as a client may send in one message (the gateway's default limit).
MAX_TASK_BYTES = 64 * 1024
WITHDRAW_TIMEOUT = 10.0


class Delegation:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name=SUBMIT_ACTIVITY)
    async def submit(self, call: ToolCallInput) -> Submitted:
        """Send the call's task to the other agent (creating the helper first, for
        `create_helper`); the same on every attempt, and quick: nothing here waits for the turn."""
        agent_id = referenced_agent(call.name) or ""
        try:
            arguments = _arguments(call)
            task = _text(arguments, "task")
            if not agent_id:
                agent_id = await self._create_helper(call, _text(arguments, "goal"))
            handle = self.client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
            message_id = delegated_message_id(call.agent_id, call.call_id)
            task_input = DelegateInput(
                message_id=message_id,
                content=task,
                sender=Sender(agent_id=call.agent_id, call_id=call.call_id),
            )
            answer: AgentAnswer = await retrying_unprocessed(
                lambda: handle.execute_update(
                    Update.DELEGATE,
                    task_input,
                    id=f"delegate-{message_id}",
                    result_type=AgentAnswer,
                )
            )
        except ToolError as err:
            return Submitted(refused=str(err), agent_id=agent_id)
        except WorkflowUpdateFailedError as err:
            return Submitted(refused=f"agent {agent_id} refused the task: {err.cause}")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return Submitted(refused=f"agent {agent_id} does not exist or was deleted")
        return Submitted(agent_id=agent_id, answer=answer if answer.outcome else None)

    @activity.defn(name=CHECK_ACTIVITY)
    async def check(self, asked: Asked) -> AgentAnswer:
        """The turn's answer if it has ended, or if it never will (the agent deleted or
        terminated); no outcome while it goes on."""
        handle = self.client.get_workflow_handle(WORKFLOW_ID_PREFIX + asked.agent_id)
        gone = AgentAnswer(call_id=asked.call_id, message_id=asked.message_id)
        gone.outcome = TurnOutcome.FAILED
        try:
            described = await handle.describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            gone.error = "it no longer exists"
            return gone
        if described.status != WorkflowExecutionStatus.RUNNING:
            status = described.status.name.lower() if described.status else "ended"
            gone.error = f"it ended ({status}) first"
            return gone
        state = await patient_query(
            handle, Query.TURN_STATE, TurnStateInput(message_id=asked.message_id), str
        )
        if state == TurnState.UNKNOWN:
            gone.error = "its turn is no longer kept"
            return gone
        if state != TurnState.ENDED:
            return AgentAnswer(call_id=asked.call_id, message_id=asked.message_id)
        update_id = f"wait-turn-{asked.message_id}-{uuid.uuid4()}"
        try:
            turn = await _turn(handle, await wait_turn(handle, asked.message_id, update_id))
        except WorkflowUpdateFailedError as err:
            gone.error = str(err.cause)
            return gone
        return answer_of(turn, asked.call_id, asked.message_id)

    @activity.defn(name=WITHDRAW_ACTIVITY)
    async def withdraw(self, asked: Asked) -> None:
        """The call was cancelled: the other agent no longer needs to answer."""
        handle = self.client.get_workflow_handle(WORKFLOW_ID_PREFIX + asked.agent_id)
        await self._withdraw(handle, asked.message_id)

    async def run(self, call: ToolCallInput, arguments: dict[str, Any]) -> ToolCallOutput:
        """One attempt of the call: the other agent's reply, or why there is none."""
        task = _text(arguments, "task")
        agent_id = referenced_agent(call.name)
        if agent_id is None:
            agent_id = await self._create_helper(call, _text(arguments, "goal"))
        turn = await self._ask(call, agent_id, task)
        if turn.outcome == TurnOutcome.COMPLETED:
            return ToolCallOutput(output=turn.reply)
        why = (
            "its turn was cancelled"
            if turn.outcome == TurnOutcome.CANCELLED
            else f"it failed: {turn.error}"
        )
        message = f"agent {agent_id} did not answer: {why}"
        return ToolCallOutput(output=message, is_error=True, error_message=message)

    async def _create_helper(self, call: ToolCallInput, goal: str) -> str:
        parent = await self.client.get_workflow_handle(
            WORKFLOW_ID_PREFIX + call.agent_id
        ).describe()
        model = str((await parent.memo()).get("model", ""))
        if not model:
            raise ToolError(f"agent {call.agent_id} has no model for a helper to use")
        spec = AgentSpec(
            agent_id=helper_id(call.agent_id, call.call_id),
            goal=goal,
            model=model,
            parent_id=call.agent_id,
        )
        tenant = parent.typed_search_attributes.get(TENANT_ATTRIBUTE) or ""
        try:
            await start_agent(self.client, NewAgent(spec=spec, tenant=tenant))
        except WorkflowAlreadyStartedError:
            # An earlier attempt of this call started it (and may not have linked it).
            await link_to_parent(self.client, spec)
        return spec.agent_id

    async def _ask(self, call: ToolCallInput, agent_id: str, task: str) -> Turn:
        """Send the task (once, whatever the attempt) and wait for the turn that answers it."""
        handle = self.client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
        message_id = delegated_message_id(call.agent_id, call.call_id)
        try:
            update = await accepted(
                lambda: handle.start_update(
                    Update.CHAT,
                    ChatInput(message_id, task),
                    id=f"chat-{message_id}",
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                    result_type=TurnResult,
                )
            )
        except WorkflowUpdateFailedError as err:
            raise ToolError(f"agent {agent_id} refused the task: {err.cause}") from None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ToolError(f"agent {agent_id} does not exist or was deleted") from None
            raise
        first: Awaitable[TurnResult] | None = update.result()
        while True:
            # In a task of its own: the SDK turns a cancel inside it into an RPC error, and this
            # attempt must know that it was cancelled.
            waiting = asyncio.ensure_future(turn_ended(handle, message_id, first))
            first = None
            try:
                await asyncio.wait({waiting})
            except asyncio.CancelledError:
                waiting.cancel()
                waiting.add_done_callback(_ignore_outcome)
                await self._withdraw(handle, message_id)
                raise
            try:
                return await _turn(handle, waiting.result())
            except WorkflowUpdateRPCTimeoutOrCancelledError:
                continue  # a long poll ran out of time: the turn goes on, so wait again
            except WorkflowUpdateFailedError as err:
                raise ToolError(f"agent {agent_id} did not answer: {err.cause}") from None
            except TurnGone:
                # Its events were archived before this attempt came back for them.
                return await _turn(handle, TurnResult(message_id=message_id, events=[]))

    async def _withdraw(self, handle: WorkflowHandle[Any, Any], message_id: str) -> None:
        try:
            async with asyncio.timeout(WITHDRAW_TIMEOUT):
                await handle.execute_update(
                    Update.WITHDRAW_MESSAGE, WithdrawInput(message_id=message_id), result_type=str
                )
        except Exception as err:  # the call ends cancelled all the same
            log.warning("could not withdraw message %s from %s: %s", message_id, handle.id, err)


async def _turn(handle: WorkflowHandle[Any, Any], result: TurnResult) -> Turn:
    """How the turn that answered ended, from its last event, or from the agent's turns when its
    events were archived already (a retried attempt, long after)."""
    last = result.events[-1] if result.events else None
    if last is not None and last.kind == EventKind.FINAL_ANSWER:
        return Turn(result.message_id, "", outcome=TurnOutcome.COMPLETED, reply=last.text)
    if last is not None and last.kind == EventKind.ERROR:
        cancelled = last.code == ErrorCode.CANCELLED
        outcome = TurnOutcome.CANCELLED if cancelled else TurnOutcome.FAILED
        return Turn(result.message_id, "", outcome=outcome, error=last.text)
    page: HistoryPage = await handle.query(Query.HISTORY, result_type=HistoryPage)
    turn = next((t for t in reversed(page.turns) if t.message_id == result.message_id), None)
    return turn or Turn(
        result.message_id, "", outcome=TurnOutcome.FAILED, error="its turn is no longer kept"
    )


def _arguments(call: ToolCallInput) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments or "{}")
    except (json.JSONDecodeError, RecursionError):
        raise ToolError(f"arguments for {call.name} are not one valid JSON object") from None
    if not isinstance(arguments, dict):
        raise ToolError(f"arguments for {call.name} must be a JSON object")
    return arguments


def _ignore_outcome(task: asyncio.Future[Any]) -> None:
    # The poll this attempt gave up (cancelled): nobody needs its error.
    if not task.cancelled():
        task.exception()


def _text(arguments: dict[str, Any], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"`{name}` is required: a non-empty string")
    if len(value.encode()) > MAX_TASK_BYTES:
        raise ToolError(f"`{name}` is over {MAX_TASK_BYTES} bytes")
    return value

"""The A2A requests an agent answers: a message is one chat turn, through the gateway's
AgentService (the very Chat call of `POST /v1/agents/{id}/messages`), and its task is read back
from the agent's durable record (engram.http.a2a_tasks).

A tool call that waits for approval leaves its task `input-required`. The client answers on the
same task (its taskId) with the text `approve` or `deny` (words after `deny` are the reason), or
a data part `{"approve": true}` / `{"approve": false, "reason": "..."}` (with `"call_id"` to
answer one call of several); that is ControlAgent's approval, and the turn goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.events import Event
from a2a.server.request_handlers import RequestHandler
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    InternalError,
    InvalidParamsError,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    PushNotificationNotSupportedError,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskPushNotificationConfig,
    TaskState,
    UnsupportedOperationError,
)
from a2a.utils.errors import A2AError
from a2a.utils.task import apply_history_length
from google.protobuf.json_format import MessageToDict

from engram.auth import stopping
from engram.gateway import validation
from engram.gateway.agent_service import AgentService
from engram.gateway.errors import GatewayError
from engram.http import calls
from engram.http.a2a_tasks import TurnTask, parse_task_id
from engram.http.errors import from_exception
from engram.http.gate import Gate
from engram.http.naming import ResponseId
from engram.http.openai_responses import turn_messages
from engram.v1 import agent_pb2

# How long reading a task back may follow its turn live before answering with what it has.
SNAPSHOT_SECONDS = 5.0
APPROVE_WORDS = frozenset({"approve", "approved", "yes", "y", "ok", "allow"})
DENY_WORDS = frozenset({"deny", "denied", "no", "n", "reject"})


def a2a_error(err: BaseException) -> A2AError:
    """A failure of a call into the gateway as a JSON-RPC error a client can act on."""
    if isinstance(err, A2AError):
        return err
    failure = from_exception(err)
    if failure.status == 400:
        return InvalidParamsError(message=failure.message)
    if failure.status == 404:
        return TaskNotFoundError(message=failure.message)
    if failure.status == 409:
        return UnsupportedOperationError(message=failure.message)
    return InternalError(message=failure.message)


class AgentRequests(RequestHandler):
    """A2A's request handler for Engram's agents; the agent is the route's (context state)."""

    def __init__(self, service: AgentService, gate: Gate) -> None:
        self.service = service
        self.gate = gate

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Task | Message:
        task = TurnTask()
        try:
            async with aclosing(self._send(params, context, task)) as events:
                async for _ in events:
                    pass
        except Exception as err:
            raise a2a_error(err) from None
        return apply_history_length(task.task(), params.configuration)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        # A stream holds one of its key's stream slots, and ends once its key is revoked, as a
        # Chat stream does.
        guard = self.gate.open_stream()
        try:
            events: AsyncIterator[Event] = self._send(params, context, TurnTask())
            if guard.stop is not None:
                events = stopping.until_stopped(events, guard.stop, calls.HttpContext())  # type: ignore[arg-type]
            async for event in events:
                yield event
        except Exception as err:
            raise a2a_error(err) from None
        finally:
            guard.close()

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> Task:
        try:
            task = await self._snapshot(self._turn_of(params.id, context))
        except Exception as err:
            raise a2a_error(err) from None
        return apply_history_length(task.task(), params)

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task:
        try:
            turn = self._turn_of(params.id, context)
            task = await self._snapshot(turn)
            if task.finished:
                raise TaskNotCancelableError(message=f"task {params.id} has ended")
            request = agent_pb2.ControlAgentRequest(agent_id=turn.agent_id)
            request.cancel.SetInParent()
            await calls.call(self.service.ControlAgent, request)
            async with aclosing(self._follow(turn, task)) as events:
                async for _ in events:
                    pass
        except Exception as err:
            raise a2a_error(err) from None
        return task.task()

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        try:
            turn = self._turn_of(params.id, context)
            task = await self._snapshot(turn)
            if task.finished:
                raise UnsupportedOperationError(message=f"task {params.id} has ended")
            yield task.task()
            async with aclosing(self._follow(turn, task)) as events:
                async for event in events:
                    yield event
        except Exception as err:
            raise a2a_error(err) from None

    # --- a message --------------------------------------------------------------------------

    async def _send(
        self, params: SendMessageRequest, context: ServerCallContext, task: TurnTask
    ) -> AsyncGenerator[Event, None]:
        message = params.message
        agent_id = context.state["agent_id"]
        if message.context_id and message.task_id and message.context_id != agent_id:
            raise InvalidParamsError(
                message=f"context {message.context_id} is not this agent's: it is {agent_id}"
            )
        if message.task_id:
            async for event in self._answer(self._turn_of(message.task_id, context), message, task):
                yield event
            return
        content = _text_of(message)
        replies = calls.chat(self.service, agent_id, content, _turn_id(message.message_id))
        async with aclosing(replies):
            async for reply in replies:
                for event in task.add(reply):
                    yield event
                if task.stopped:
                    return

    async def _answer(
        self, turn: ResponseId, message: Message, task: TurnTask
    ) -> AsyncGenerator[Event, None]:
        """A message on a task that waits for approval: the decision, then the turn goes on."""
        now = await self._snapshot(turn)
        if now.state != TaskState.TASK_STATE_INPUT_REQUIRED:
            what = "has ended" if now.finished else "needs no input now"
            raise UnsupportedOperationError(
                message=f"task {now.id} {what}: send a new message without a taskId"
            )
        approve, reason, call_id = _decision(message)
        chosen = [c for c in now.waiting if not call_id or c.call_id == call_id]
        if not chosen:
            raise InvalidParamsError(message=f"task {now.id} waits for no call {call_id!r}")
        for call in chosen:
            approval = agent_pb2.Approval(call_id=call.call_id, approved=approve, reason=reason)
            request = agent_pb2.ControlAgentRequest(agent_id=turn.agent_id, approval=approval)
            await calls.call(self.service.ControlAgent, request)
        task.__dict__.update(now.__dict__)
        yield task.task()
        async for event in self._follow(turn, task):
            yield event

    # --- the durable record -----------------------------------------------------------------

    def _turn_of(self, text: str, context: ServerCallContext) -> ResponseId:
        turn = parse_task_id(text)
        if turn is None or turn.agent_id != context.state["agent_id"]:
            raise TaskNotFoundError(message=f"task {text[:160]!r} not found")
        return turn

    async def _snapshot(self, turn: ResponseId) -> TurnTask:
        """The task as the agent's record holds it now (its turn's messages so far)."""
        request = agent_pb2.GetAgentRequest(agent_id=turn.agent_id)
        newest = (await calls.call(self.service.GetAgent, request)).last_sequence_id
        task = TurnTask()
        try:
            async with asyncio.timeout(SNAPSHOT_SECONDS):
                async with aclosing(turn_messages(self.service, turn)) as messages:
                    async for message in messages:
                        task.add(message)
                        if task.finished or message.sequence_id >= newest:
                            break
        except TimeoutError:
            pass
        if task.turn is None:
            raise TaskNotFoundError(message=f"task {turn} not found")
        return task

    async def _follow(self, turn: ResponseId, task: TurnTask) -> AsyncGenerator[Event, None]:
        """The events of the turn after what `task` holds, live, until it ends or waits."""
        seen = task.last_sequence
        replay = TurnTask()
        async with aclosing(turn_messages(self.service, turn)) as messages:
            async for message in messages:
                events = replay.add(message)
                if message.sequence_id > seen:
                    for event in events:
                        yield event
                if replay.stopped and message.sequence_id > seen:
                    break
        task.__dict__.update(replay.__dict__)

    # --- not offered ------------------------------------------------------------------------

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        raise UnsupportedOperationError(message="listing tasks is not supported")

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        raise PushNotificationNotSupportedError

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        raise PushNotificationNotSupportedError

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        raise PushNotificationNotSupportedError

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        raise UnsupportedOperationError(message="there is no extended agent card")


def _turn_id(message_id: str) -> str:
    """The turn's message id: the A2A message's own (a resent message is the same turn), or a
    digest of it where Engram's rules refuse it."""
    try:
        return validation.message_id(message_id)
    except GatewayError:
        return "a2a-" + hashlib.sha256(message_id.encode()).hexdigest()[:32]


def _parts(message: Message) -> list[str | Any]:
    found: list[str | Any] = []
    for part in message.parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            found.append(part.text)
        elif kind == "data":
            found.append(MessageToDict(part.data))
        else:
            raise InvalidParamsError(message="only text and data parts are supported")
    return found


def _text_of(message: Message) -> str:
    texts = [p if isinstance(p, str) else json.dumps(p) for p in _parts(message)]
    return "\n".join(texts)


def _decision(message: Message) -> tuple[bool, str, str]:
    """(approve, reason, call_id or "") from an answer to an approval."""
    for part in _parts(message):
        if isinstance(part, dict) and isinstance(part.get("approve"), bool):
            return part["approve"], str(part.get("reason", "")), str(part.get("call_id", ""))
        if isinstance(part, str) and part.strip():
            word, _, rest = part.strip().partition(" ")
            word = word.strip(".,!:;").lower()
            if word in APPROVE_WORDS:
                return True, "", ""
            if word in DENY_WORDS:
                return False, rest.strip(), ""
    raise InvalidParamsError(
        message="this task waits for approval: answer with the text 'approve' or 'deny' "
        '(or a data part {"approve": true} / {"approve": false, "reason": "..."})'
    )

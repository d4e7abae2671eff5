"""A2A tasks made from an agent's turns.

A task is one turn: its id is `task_<agent id>_<sequence id of the turn's user message>_<message
id>` (as a Responses id is), so a task is read back from the agent's durable record alone. The
context id is the agent id: an agent holds one conversation. Everything here is a function of the
turn's messages in order, so a task read back from the record is the task that was streamed.

States: working while the turn runs, input-required while a tool call waits for approval (the
status message names the call), completed with the reply as the artifact `reply`, failed or
canceled when the turn did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf import struct_pb2
from google.protobuf.json_format import ParseDict

from engram.gateway import validation
from engram.gateway.errors import GatewayError
from engram.http.naming import ResponseId
from engram.http.reply_text import ReplyText
from engram.v1 import agent_pb2
from engram.vocabulary import Notice

TASK_PREFIX = "task_"
REPLY_ARTIFACT = "reply"
FINISHED = frozenset(
    {TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED}
)

Event = Task | TaskStatusUpdateEvent | TaskArtifactUpdateEvent


def task_id(turn: ResponseId) -> str:
    return f"{TASK_PREFIX}{turn.agent_id}_{turn.user_sequence}_{turn.message_id}"


def parse_task_id(text: str) -> ResponseId | None:
    """The turn a task id names; None for anything that is not a task id this server made."""
    parts = text.removeprefix(TASK_PREFIX).split("_", 2)
    if not text.startswith(TASK_PREFIX) or len(parts) != 3 or not parts[1].isdigit():
        return None
    agent, sequence, message = parts
    try:
        validation.agent_id(agent)
        validation.message_id(message)
    except GatewayError:
        return None
    if int(sequence) < 1:
        return None
    return ResponseId(agent, int(sequence), message)


def data_part(value: Any) -> Part:
    return Part(data=ParseDict(value, struct_pb2.Value()))


@dataclass
class WaitingCall:
    call_id: str
    tool_name: str
    arguments: str


@dataclass
class TurnTask:
    """One task, built from its turn's messages, the user message first."""

    turn: ResponseId | None = None
    user_text: str = ""
    state: TaskState = TaskState.TASK_STATE_WORKING
    status_text: str = ""
    reply: ReplyText | None = None
    calls: dict[str, WaitingCall] = field(default_factory=dict)
    waiting: list[WaitingCall] = field(default_factory=list)
    last_sequence: int = 0
    chunks: int = 0  # reply artifact chunks sent

    @property
    def id(self) -> str:
        assert self.turn is not None
        return task_id(self.turn)

    @property
    def context_id(self) -> str:
        assert self.turn is not None
        return self.turn.agent_id

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def stopped(self) -> bool:
        """Finished, or waiting for the client's input."""
        return self.finished or self.state == TaskState.TASK_STATE_INPUT_REQUIRED

    def add(self, message: agent_pb2.ServerMessage) -> list[Event]:
        """Take one of the agent's messages; the events it makes (none for other turns')."""
        if self.turn is None:
            if message.WhichOneof("payload") != "user_message":
                return []
            self.turn = ResponseId(message.agent_id, message.sequence_id, message.message_id)
            self.user_text = message.user_message.content
            self.reply = ReplyText(message.message_id)
            self.last_sequence = message.sequence_id
            return [self.task()]
        assert self.reply is not None
        if message.message_id != self.turn.message_id or self.finished:
            return []
        self.last_sequence = max(self.last_sequence, message.sequence_id)
        kind = message.WhichOneof("payload")
        delta = self.reply.add(message)
        if kind == "tool_call":
            call = message.tool_call
            self.calls[call.call_id] = WaitingCall(call.call_id, call.tool_name, call.input_json)
        elif kind == "status":
            return self._notice(message.status)
        elif kind == "final_answer":
            return self._completed(message.final_answer.content, delta)
        elif kind == "error":
            cancelled = "cancel" in (message.error.code or "")
            state = TaskState.TASK_STATE_CANCELED if cancelled else TaskState.TASK_STATE_FAILED
            return [self._status(state, message.error.message or message.error.code)]
        if delta:
            return [self._chunk(delta, append=self.chunks > 0, last=False)]
        return []

    def _notice(self, status: agent_pb2.StatusUpdate) -> list[Event]:
        if status.status == Notice.AWAITING_APPROVAL:
            named = [c for c in self.calls.values() if _names(status.message, c.call_id)]
            call = named[0] if named else list(self.calls.values())[-1]
            if call not in self.waiting:
                self.waiting.append(call)
            return [self._status(TaskState.TASK_STATE_INPUT_REQUIRED, _asking(self.waiting))]
        if status.status in (Notice.APPROVED, Notice.DENIED, Notice.RESPONDED):
            self.waiting = [c for c in self.waiting if not _names(status.message, c.call_id)]
            if self.waiting and self.state == TaskState.TASK_STATE_INPUT_REQUIRED:
                return [self._status(self.state, _asking(self.waiting))]
            return [self._status(TaskState.TASK_STATE_WORKING, status.message)]
        if status.status == Notice.RESTARTING and self.chunks:
            # The reply starts over: the text sent so far is replaced.
            self.chunks = 0
        elif status.status == Notice.JOINED:
            return [
                self._status(
                    TaskState.TASK_STATE_FAILED,
                    "this message was answered together with another one sent at the same "
                    "time: the answer is in that task",
                )
            ]
        return []

    def _completed(self, text: str, delta: str) -> list[Event]:
        assert self.reply is not None
        if self.reply.shown == text and self.chunks:
            chunk = self._chunk(delta, append=True, last=True)
        else:
            chunk = self._chunk(text, append=False, last=True)
        return [chunk, self._status(TaskState.TASK_STATE_COMPLETED, text)]

    def _chunk(self, text: str, append: bool, last: bool) -> TaskArtifactUpdateEvent:
        self.chunks += 1
        return TaskArtifactUpdateEvent(
            task_id=self.id,
            context_id=self.context_id,
            artifact=Artifact(
                artifact_id=REPLY_ARTIFACT, name=REPLY_ARTIFACT, parts=[Part(text=text)]
            ),
            append=append,
            last_chunk=last,
        )

    def _status(self, state: TaskState, text: str) -> TaskStatusUpdateEvent:
        self.state, self.status_text = state, text
        return TaskStatusUpdateEvent(
            task_id=self.id, context_id=self.context_id, status=self._task_status()
        )

    def _task_status(self) -> TaskStatus:
        status = TaskStatus(state=self.state)
        if self.status_text or self.waiting:
            parts = [Part(text=self.status_text)]
            if self.state == TaskState.TASK_STATE_INPUT_REQUIRED:
                parts.append(data_part({"pending_calls": [_call(c) for c in self.waiting]}))
            status.message.CopyFrom(
                Message(
                    message_id=f"{self.id}-status-{self.last_sequence}",
                    context_id=self.context_id,
                    task_id=self.id,
                    role=Role.ROLE_AGENT,
                    parts=parts,
                )
            )
        return status

    def task(self) -> Task:
        """The task as it stands."""
        assert self.turn is not None and self.reply is not None
        task = Task(id=self.id, context_id=self.context_id, status=self._task_status())
        task.history.append(
            Message(
                message_id=self.turn.message_id,
                context_id=self.context_id,
                task_id=self.id,
                role=Role.ROLE_USER,
                parts=[Part(text=self.user_text)],
            )
        )
        text = self.reply.final if self.reply.final is not None else self.reply.shown
        if text:
            task.artifacts.append(
                Artifact(artifact_id=REPLY_ARTIFACT, name=REPLY_ARTIFACT, parts=[Part(text=text)])
            )
        return task


def _names(notice: str, call_id: str) -> bool:
    return call_id in notice.replace(":", " ").split()


def _call(call: WaitingCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        arguments = call.arguments
    return {"call_id": call.call_id, "tool_name": call.tool_name, "arguments": arguments}


def _asking(calls: list[WaitingCall]) -> str:
    named = ", ".join(f"{c.tool_name} {c.arguments or '{}'}" for c in calls)
    return (
        f"Approval needed to run {named}. Answer on this task with the text 'approve' or "
        '\'deny\', or a data part {"approve": true} or {"approve": false, "reason": "..."}.'
    )

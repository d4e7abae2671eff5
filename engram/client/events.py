"""What an agent sends, as typed, immutable events.

Each `ServerMessage` payload a client can receive becomes one frozen dataclass carrying the
message's `sequence_id` (one counter over the agent's whole life) and `message_id` (the turn it
belongs to; empty for notices between turns). Two events are equal when they say the same thing at
the same place in the stream: the timestamp is left out of the comparison, because a live message
is stamped when made and its stored copy when recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engram.v1 import agent_pb2
from engram.vocabulary import Notice


@dataclass(frozen=True, kw_only=True)
class _Event:
    sequence_id: int
    message_id: str
    timestamp: datetime | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class UserMessage(_Event):
    """The user's input, now durably recorded: the first event of every turn."""

    content: str


@dataclass(frozen=True)
class Text(_Event):
    """A piece of the reply, as the model produces it."""

    content: str


@dataclass(frozen=True)
class Thought(_Event):
    """A piece of the model's reasoning, when the endpoint shares it."""

    content: str


@dataclass(frozen=True)
class ToolCall(_Event):
    """The model called a tool; `arguments` is its input, parsed."""

    call_id: str
    name: str
    input_json: str

    @property
    def arguments(self) -> dict[str, Any]:
        """The input as a dict; empty if it is not a JSON object (the agent answers the model
        with an error then)."""
        try:
            value = json.loads(self.input_json or "{}")
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ToolResult(_Event):
    """A tool's answer to the call with the same `call_id`."""

    call_id: str
    output: str
    is_error: bool = False
    error_message: str = ""


@dataclass(frozen=True)
class Status(_Event):
    """A notice; `status` is a `engram.vocabulary.Notice` value, `message` says it for people."""

    status: str
    message: str = ""

    @property
    def restarting(self) -> bool:
        """The reply restarts from the beginning: discard the text shown so far."""
        return self.status == Notice.RESTARTING


@dataclass(frozen=True)
class Final(_Event):
    """The whole reply: the last event of a turn that completed."""

    content: str


@dataclass(frozen=True)
class Error(_Event):
    """Why a turn failed or was cancelled (`code` is an `engram.vocabulary.ErrorCode`): the last
    event of a turn that did not complete."""

    code: str
    message: str = ""


Event = UserMessage | Text | Thought | ToolCall | ToolResult | Status | Final | Error


def ends_turn(event: Event) -> bool:
    return isinstance(event, Final | Error)


def from_message(message: agent_pb2.ServerMessage) -> Event | None:
    """The event a message carries; None for payloads that carry nothing to show (heartbeats)."""
    base: dict[str, Any] = {
        "sequence_id": message.sequence_id,
        "message_id": message.message_id,
        "timestamp": message.timestamp.ToDatetime(tzinfo=UTC)
        if message.HasField("timestamp")
        else None,
    }
    kind = message.WhichOneof("payload")
    if kind == "user_message":
        return UserMessage(message.user_message.content, **base)
    if kind == "text":
        return Text(message.text.content, **base)
    if kind == "thought":
        return Thought(message.thought.content, **base)
    if kind == "tool_call":
        call = message.tool_call
        return ToolCall(call.call_id, call.tool_name, call.input_json, **base)
    if kind == "tool_result":
        result = message.tool_result
        return ToolResult(
            result.call_id, result.output, result.is_error, result.error_message, **base
        )
    if kind == "status":
        return Status(message.status.status, message.status.message, **base)
    if kind == "final_answer":
        return Final(message.final_answer.content, **base)
    if kind == "error":
        return Error(message.error.code, message.error.message, **base)
    return None

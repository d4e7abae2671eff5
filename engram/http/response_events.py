"""A turn's messages as the Responses API's objects and stream events.

Everything here is a function of the turn's own messages, in order: replaying them from the
durable record gives the very same events, numbers and ids as the live stream did. So a stream
is resumed by building it again and skipping what the client already has, and each event goes
out exactly once.

Each stream event's SSE id is `<sequence id>.<n>`: the sequence id of the agent's message it was
made from, and its place among the events made from that message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engram.http.naming import ResponseId, model_name
from engram.http.reply_text import ReplyText
from engram.v1 import agent_pb2


@dataclass(frozen=True)
class Event:
    sequence_id: int
    n: int  # its place among the events of its message
    data: dict[str, Any]

    @property
    def event_id(self) -> str:
        return f"{self.sequence_id}.{self.n}"

    @property
    def number(self) -> int:
        return int(self.data["sequence_number"])


def parse_event_id(text: str) -> tuple[int, int]:
    """A Last-Event-ID: `<sequence id>.<n>`, or a bare `<sequence id>` (every event of it)."""
    sequence, _, n = text.strip().partition(".")
    if not sequence.isdigit() or (n and not n.isdigit()):
        raise ValueError(text)
    return int(sequence), int(n) if n else 1 << 30


class ResponseEvents:
    """Builds one response from its turn's messages, the user message first."""

    def __init__(self) -> None:
        self.response_id: ResponseId | None = None
        self.created_at = 0
        self.reply: ReplyText | None = None
        self.status = "in_progress"
        self.opened = False  # the output message item was announced
        self.numbered = 0

    @property
    def done(self) -> bool:
        return self.status != "in_progress"

    @property
    def item_id(self) -> str:
        assert self.response_id is not None
        return f"msg_{self.response_id.message_id}"

    def add(self, message: agent_pb2.ServerMessage) -> list[Event]:
        """The events `message` makes (none for other turns' messages and for kinds this API
        does not show: thoughts, tool calls, notices)."""
        if self.response_id is None:
            if message.WhichOneof("payload") != "user_message":
                return []
            self.response_id = ResponseId(message.agent_id, message.sequence_id, message.message_id)
            self.created_at = message.timestamp.seconds
            self.reply = ReplyText(message.message_id)
            return self._events(
                message,
                [
                    {"type": "response.created", "response": self.body()},
                    {"type": "response.in_progress", "response": self.body()},
                ],
            )
        assert self.reply is not None
        if self.done or message.message_id != self.reply.message_id:
            return []
        delta = self.reply.add(message)
        out: list[dict[str, Any]] = []
        if delta or self.reply.final is not None:
            out.extend(self._open())
        if delta:
            out.append({"type": "response.output_text.delta", **self._at(), "delta": delta})
        if self.reply.final is not None:
            self.status = "completed"
            text = self.reply.final
            out.append({"type": "response.output_text.done", **self._at(), "text": text})
            out.append({"type": "response.content_part.done", **self._at(), "part": _part(text)})
            out.append(
                {"type": "response.output_item.done", "output_index": 0, "item": self._item()}
            )
            out.append({"type": "response.completed", "response": self.body()})
        elif self.reply.error is not None or self.reply.joined:
            self.status = "failed"
            out.append({"type": "response.failed", "response": self.body()})
        return self._events(message, out)

    def _open(self) -> list[dict[str, Any]]:
        if self.opened:
            return []
        self.opened = True
        item = {
            "type": "message",
            "id": self.item_id,
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        return [
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            {"type": "response.content_part.added", **self._at(), "part": _part("")},
        ]

    def _at(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": 0, "content_index": 0, "logprobs": []}

    def _events(self, message: agent_pb2.ServerMessage, datas: list[dict[str, Any]]) -> list[Event]:
        events = []
        for n, data in enumerate(datas):
            data["sequence_number"] = self.numbered
            self.numbered += 1
            events.append(Event(message.sequence_id, n, data))
        return events

    def _item(self) -> dict[str, Any]:
        assert self.reply is not None and self.reply.final is not None
        return {
            "type": "message",
            "id": self.item_id,
            "status": "completed",
            "role": "assistant",
            "content": [_part(self.reply.final)],
        }

    def error(self) -> dict[str, str] | None:
        if self.reply is None:
            return None
        if self.reply.error is not None:
            code, message = self.reply.error
            return {"code": code, "message": message}
        if self.reply.joined:
            return {
                "code": "joined",
                "message": "this message was answered together with another one sent at the "
                "same time: the answer is in that response",
            }
        return None

    def body(self) -> dict[str, Any]:
        """The response object as it stands."""
        return {
            "id": str(self.response_id),
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "model": model_name(self.response_id.agent_id) if self.response_id else "",
            "output": [self._item()] if self.status == "completed" else [],
            "error": self.error(),
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "parallel_tool_calls": False,
            # Not kept: the agent is the conversation, whichever response was named.
            "previous_response_id": None,
            "tool_choice": "auto",
            "tools": [],
            "temperature": None,
            "top_p": None,
            "usage": None,
        }


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}

"""Conversion between Engram's stored Events and the wire's ServerMessages."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from engram.v1 import agent_pb2
from engram.vocabulary import TOOL_ERROR, EventKind, Notice
from engram.workflows.types import Event, StreamPiece

RESTART_NOTICE = "the reply restarts from the beginning; discard the text shown so far"


def timestamp(seconds: float) -> Timestamp:
    """To the microsecond: a float of epoch seconds holds no more, so the time read back from a
    message (`to_piece`) gives the same message again."""
    ts = Timestamp()
    ts.FromMicroseconds(round(seconds * 1e6))
    return ts


def to_server_message(agent_id: str, event: Event) -> agent_pb2.ServerMessage:
    msg = agent_pb2.ServerMessage(
        agent_id=agent_id,
        sequence_id=event.seq,
        timestamp=timestamp(event.ts),
        message_id=event.message_id,
    )
    if event.kind == EventKind.TEXT:
        msg.text.content = event.text
    elif event.kind == EventKind.THOUGHT:
        msg.thought.content = event.text
    elif event.kind == EventKind.OBSERVATION:
        msg.observation.content = event.text
    elif event.kind == EventKind.FINAL_ANSWER:
        msg.final_answer.content = event.text
        if event.structured is not None:
            msg.final_answer.structured.update(event.structured)
    elif event.kind == EventKind.ERROR:
        msg.error.code = event.code
        msg.error.message = event.text
    elif event.kind == EventKind.USER_MESSAGE:
        msg.user_message.content = event.text
    elif event.kind == EventKind.STATUS:
        msg.status.status = event.code
        msg.status.message = event.text
    elif event.kind == EventKind.TOOL_CALL:
        msg.tool_call.tool_name = event.code
        msg.tool_call.input_json = event.text
        msg.tool_call.call_id = event.call_id
    elif event.kind == EventKind.TOOL_RESULT:
        msg.tool_result.call_id = event.call_id
        msg.tool_result.output = event.text
        msg.tool_result.is_error = event.code == TOOL_ERROR
        msg.tool_result.error_message = event.text if event.code == TOOL_ERROR else ""
    elif event.kind == EventKind.RESTART:
        msg.status.status = Notice.RESTARTING
        msg.status.message = RESTART_NOTICE
    else:
        raise ValueError(f"unknown event kind {event.kind!r}")
    return msg


def to_piece(msg: agent_pb2.ServerMessage) -> StreamPiece | None:
    """The StreamPiece a relayed message was made from (None for a turn's prelude)."""
    kind = msg.WhichOneof("payload")
    at = msg.timestamp.ToMicroseconds() / 1e6
    if kind == "text":
        return StreamPiece(EventKind.TEXT, msg.text.content, at=at)
    if kind == "thought":
        return StreamPiece(EventKind.THOUGHT, msg.thought.content, at=at)
    if kind == "status" and msg.status.status == Notice.RESTARTING:
        return StreamPiece(EventKind.RESTART, "", at=at)
    if kind == "status":
        return StreamPiece(EventKind.STATUS, msg.status.message, msg.status.status, at=at)
    return None


def ends_turn(msg: agent_pb2.ServerMessage) -> bool:
    """The last message of its turn: the answer, an error, or the notice that the message was
    taken into another turn (which answers it)."""
    kind = msg.WhichOneof("payload")
    return kind in ("final_answer", "error") or (
        kind == "status" and msg.status.status == Notice.JOINED
    )

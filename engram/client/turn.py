"""Following a stream across reconnects: each sequence id once, in order.

The gateway numbers every message an agent sends, so a client that remembers the last number it
showed can pick up after any failure (Replay from it, or resend the turn's message id) and drop
whatever it already had. This module holds that bookkeeping for both clients; they do the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from engram.client import requests
from engram.client.connection import Reconnect
from engram.client.events import Event, Status, ToolCall, ends_turn, from_message
from engram.v1 import agent_pb2
from engram.vocabulary import Notice, Waiting


class StreamCursor:
    """Remembers the last sequence id handed to the caller and drops what is not newer."""

    def __init__(self, after: int | None = None) -> None:
        self.last_seq = after

    def accept(self, message: agent_pb2.ServerMessage) -> Event | None:
        if self.last_seq is not None and message.sequence_id <= self.last_seq:
            return None
        self.last_seq = message.sequence_id
        return from_message(message)


@dataclass(frozen=True)
class Waits:
    """The turn stopped at a tool call: `waiting_for` is an `engram.vocabulary.Waiting`."""

    call: ToolCall
    waiting_for: str


class TurnTracker:
    """One turn, from its message id: only its own events, each once, until it ends.

    Before any event was seen the turn may not even have reached the agent, so the way back is to
    resend its input with the same message id (which never starts a second turn); after that,
    Replay from the last event seen, which also draws the turn's live tokens to the new gateway.
    """

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.cursor = StreamCursor()
        self.ended = False
        # Its message was taken into another turn, which this tracker now follows (with Replay:
        # the message's own stream has ended).
        self.joined = False
        self._last_call: ToolCall | None = None

    @property
    def last_seq(self) -> int | None:
        return self.cursor.last_seq

    def accept(self, message: agent_pb2.ServerMessage) -> Event | None:
        # Replay carries everything the agent does; a turn is only what bears its message id.
        if message.message_id != self.message_id or self.ended:
            return None
        event = self.cursor.accept(message)
        if isinstance(event, ToolCall):
            self._last_call = event
        if isinstance(event, Status) and event.status == Notice.JOINED and event.message:
            # Taken into the turn in progress (double texting): that turn answers it.
            self.message_id = event.message
            self.joined = True
        if event is not None and ends_turn(event):
            self.ended = True
        return event

    def waits(self, event: Event) -> Waits | None:
        """What the turn waits for, if this event says it now waits (for the last tool call)."""
        if not isinstance(event, Status) or self._last_call is None:
            return None
        if event.status == Notice.AWAITING_APPROVAL:
            return Waits(self._last_call, Waiting.APPROVAL)
        if event.status == Notice.AWAITING_RESULT:
            return Waits(self._last_call, Waiting.RESULT)
        return None


class TurnResume:
    """A turn's stream across reconnects, for both clients: what to pass on, how long to wait
    after the stream ends or drops, and which stream to open next."""

    def __init__(self, agent_id: str, content: str, message_id: str, reconnect: Reconnect) -> None:
        self.agent_id = agent_id
        # Sent to start the turn, and sent again (same message id) until an event of it is seen.
        self.message = requests.user_input(agent_id, content, message_id)
        self.tracker = TurnTracker(message_id)
        # Open Replay (from `tracker.last_seq`) next rather than resend the message.
        self.replay = False
        self._reconnect = reconnect

    def accept(self, message: agent_pb2.ServerMessage) -> Event | None:
        event = self.tracker.accept(message)
        if event is not None:
            self._reconnect.progressed()
        return event

    def ended_early(self) -> float:
        """The stream ended before the turn did: the delay before opening the next one."""
        # A Replay ends when nothing of the turn is in flight there: the turn may still be
        # queued. Resending its message id waits for it, whatever its state; a message taken
        # into another turn follows that turn with Replay.
        self.replay = self.tracker.joined
        return self._reconnect.delay_to_look_again("the turn did not end")

    def dropped(self, err: grpc.RpcError) -> float:
        """The stream failed with `err`: the delay before opening the next one (or raises)."""
        delay = self._reconnect.delay_after(err)
        self.replay = self.tracker.last_seq is not None
        return delay

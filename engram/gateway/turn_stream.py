"""Streams one turn to a client: live tokens first, the durable record to finish.

Two sources meet here. The live feed (tokens relayed by the LLM activity) is fast and best effort:
it may lack messages, and a retried attempt re-sends what an earlier one sent. The durable record
(the turn's events, from the workflow when the turn ends) is complete. `TurnMerge` decides what a
client is sent from the two, so that each sequence id goes out at most once, in increasing order,
with no gap inside the turn; `follow_turn` feeds it as the sources change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from engram.gateway.token_hub import TurnFeed
from engram.messages import ends_turn
from engram.v1 import agent_pb2

Messages = list[agent_pb2.ServerMessage]


class Cursor:
    """The last sequence id a client stream was sent, per agent."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}


class TurnMerge:
    """Which of a turn's messages a client is sent next, and when the turn is done.

    With `everything=False` (Chat) the client is sent the turn's own messages only (those carrying
    its message id), from its user message to its final answer or error: another client's turns
    and the agent's notices between turns are not this stream's business (Replay follows them).
    With `everything=True` (Replay) the client is sent every message of the agent after `after`,
    contiguously, until the turn ends; a gap before the turn is filled from the agent's stored
    messages (`gap` says from where, `add` takes them).

    `after` is the last sequence id this client already has: nothing at or below it is sent again.
    """

    def __init__(self, message_id: str, *, after: int | None, everything: bool = False) -> None:
        self.message_id = message_id
        self.everything = everything
        # The last sequence id sent (or already held by the client); None until the start is known.
        self.last = after
        self.done = False
        self._start_known = everything and after is not None
        self._known: dict[int, agent_pb2.ServerMessage] = {}
        self._complete = False
        self._filled_below = -1

    def add(self, messages: Iterable[agent_pb2.ServerMessage]) -> None:
        """Messages from the live feed or the stored record; the first copy of a sequence id wins
        (a retried attempt re-sends what the first one sent, numbered the same)."""
        for message in messages:
            if self.everything or message.message_id == self.message_id:
                self._known.setdefault(message.sequence_id, message)

    def complete(self, record: Iterable[agent_pb2.ServerMessage]) -> None:
        """The turn's whole durable record: everything it has is now known."""
        if self._complete:
            return
        # The record is the truth: where the live feed disagrees, the record's copy is sent.
        for message in record:
            if self.everything or message.message_id == self.message_id:
                self._known[message.sequence_id] = message
        self._complete = True

    def take(self) -> Messages:
        """The messages that may be sent now, in order; marks them sent."""
        out: Messages = []
        if self.done or not self._find_start():
            return out
        assert self.last is not None
        while not self.done:
            message = self._known.get(self.last + 1)
            if message is None:
                ahead = [s for s in self._known if s > self.last]
                if not self._complete or self.gap_unfilled(ahead):
                    break
                if not ahead:
                    self.done = True  # this client was already sent the whole turn
                    break
                # The record is complete: what is missing does not exist. Skip to what does.
                self.last = min(ahead) - 1
                continue
            out.append(message)
            self.last += 1
            if ends_turn(message) and message.message_id == self.message_id:
                self.done = True
        return out

    def gap(self) -> int | None:
        """(Replay) Read the agent's stored messages after this sequence id: something was stored
        between what the client has and what the turn has sent. Asked once per gap."""
        if self.done or self.last is None or self.last + 1 in self._known:
            return None
        ahead = [s for s in self._known if s > self.last]
        if not self.gap_unfilled(ahead):
            return None
        self._filled_below = min(ahead)
        return self.last

    def gap_unfilled(self, ahead: list[int]) -> bool:
        return self.everything and bool(ahead) and self._filled_below < min(ahead)

    def _find_start(self) -> bool:
        if self._start_known:
            return True
        # A Chat stream starts at the turn's user message, which is its first.
        first = next(
            (
                s
                for s, m in self._known.items()
                if m.WhichOneof("payload") == "user_message" and m.message_id == self.message_id
            ),
            None,
        )
        if first is None and self._complete and self._known:
            first = min(self._known)
        if first is None:
            return False
        self.last = first - 1 if self.last is None else max(self.last, first - 1)
        self._start_known = True
        return True


async def follow_turn(
    merge: TurnMerge,
    feed: TurnFeed,
    turn_result: Awaitable[Messages],
    stored_since: Callable[[int], Awaitable[Messages]],
) -> AsyncIterator[agent_pb2.ServerMessage]:
    """Yield what `merge` lets out as the live feed grows, until the turn is done.

    `turn_result` resolves to the turn's complete record; `stored_since(seq)` reads the agent's
    stored messages after `seq`, to fill a gap before the turn (Replay only).
    """
    result_task = asyncio.ensure_future(turn_result)
    read = 0
    try:
        while True:
            version = feed.version
            merge.add(feed.arrived[read:])
            read = len(feed.arrived)
            if result_task.done():
                merge.complete(result_task.result())  # raises if the turn could not be read
            for message in merge.take():
                yield message
            if merge.done:
                return
            if (after := merge.gap()) is not None:
                merge.add(await stored_since(after))
                continue
            if result_task.done():
                continue  # it completed while we were yielding: merge it first
            live = asyncio.ensure_future(feed.wait_past(version))
            await asyncio.wait([live, result_task], return_when=asyncio.FIRST_COMPLETED)
            live.cancel()
    finally:
        cancel_quietly(result_task)


def cancel_quietly(future: asyncio.Future[Any]) -> None:
    """Cancel `future`, and let nobody hear of how it ends: a client that leaves mid-turn is
    normal, and Temporal's client answers the cancel of its wait with an error of its own, which
    asyncio would otherwise log, with a traceback, as never retrieved."""
    future.cancel()
    future.add_done_callback(lambda done: done.cancelled() or done.exception())

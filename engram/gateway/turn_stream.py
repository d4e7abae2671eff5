"""Streams one turn to a client: live tokens first, the durable record to finish.

Live messages come from the turn's feed (best effort, possibly with gaps); the durable record comes
from the workflow when the turn ends. Messages leave strictly in sequence order with no gap and no
repeat, so a client may trust sequence_id for de-duplication and resumption.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from engram.gateway.token_hub import TurnFeed
from engram.messages import ends_turn
from engram.v1 import agent_pb2

Messages = list[agent_pb2.ServerMessage]


class Cursor:
    """The last sequence id a client stream was sent, per agent."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}


async def follow_turn(
    agent_id: str,
    message_id: str,
    feed: TurnFeed,
    turn_result: Awaitable[Messages],
    stored_since: Callable[[int], Awaitable[Messages]],
    cursor: Cursor,
) -> AsyncIterator[agent_pb2.ServerMessage]:
    """Yield the turn's messages (and any stored ones before them that the client lacks).

    `turn_result` resolves to the turn's complete record; `stored_since(seq)` reads the agent's
    stored messages after `seq`, to fill a gap before the turn.
    """
    known: dict[int, agent_pb2.ServerMessage] = {}
    result_task = asyncio.ensure_future(turn_result)
    filled_below = -1
    try:
        while True:
            version = feed.version
            known.update(feed.messages)
            complete = result_task.done()
            if complete:
                known.update((m.sequence_id, m) for m in result_task.result())

            last = cursor.last.get(agent_id)
            if last is None and known:
                last = min(known) - 1  # a new stream starts at this turn
            if last is not None:
                while (msg := known.get(last + 1)) is not None:
                    yield msg
                    last += 1
                    cursor.last[agent_id] = last
                    if ends_turn(msg) and msg.message_id == message_id:
                        return
                ahead = [s for s in known if s > last]
                if ahead and filled_below < min(ahead):
                    # Something was stored between the client's last message and this turn.
                    filled_below = min(ahead)
                    known.update((m.sequence_id, m) for m in await stored_since(last))
                    continue
                if complete:
                    if not ahead:
                        return  # this stream was already sent the whole turn
                    # The record is complete; what is missing no longer exists. Skip to it.
                    cursor.last[agent_id] = min(ahead) - 1
                    continue

            if result_task.done():
                result_task.result()  # raises if the turn could not be read
                continue  # it completed while we were yielding: merge it first
            live = asyncio.ensure_future(feed.wait_past(version))
            await asyncio.wait([live, result_task], return_when=asyncio.FIRST_COMPLETED)
            live.cancel()
    finally:
        if not result_task.done():
            result_task.cancel()

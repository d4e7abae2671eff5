"""Where tokens from the workers meet the client streams that wait for them.

Workers publish each turn's messages here (the TokenRelay service); Chat and Replay calls follow
the feed of the turn they serve. A feed outlives its readers for a while, so a client that
reconnects mid-turn can pick the turn up again. The relay is internal: only callers holding the
workers' relay secret may publish or read a feed (engram.auth.relay_secret).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf import empty_pb2

from engram.auth import metadata, relay_secret
from engram.auth.relay_secret import RelayGuard
from engram.observability import metrics
from engram.relay.v1 import relay_pb2, relay_pb2_grpc
from engram.v1 import agent_pb2

TurnKey = tuple[str, str]  # (agent_id, message_id)

FEED_TTL_SECONDS = 300.0
SWEEP_EVERY_SECONDS = 30.0


class TurnFeed:
    """The messages of one turn received so far, keyed by sequence id."""

    def __init__(self) -> None:
        self.messages: dict[int, agent_pb2.ServerMessage] = {}
        # The same messages in the order they came: a reader takes what is new since last time.
        self.arrived: list[agent_pb2.ServerMessage] = []
        self.readers = 0
        self.touched = time.monotonic()
        self._version = 0
        self._changed = asyncio.Condition()

    async def put(self, messages: Iterable[agent_pb2.ServerMessage]) -> None:
        # A retried activity re-sends what its first attempt sent: first copy wins.
        self.touched = time.monotonic()
        for message in messages:
            if message.sequence_id not in self.messages:
                self.messages[message.sequence_id] = message
                self.arrived.append(message)
        async with self._changed:
            self._version += 1
            self._changed.notify_all()

    @property
    def version(self) -> int:
        return self._version

    async def wait_past(self, version: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._version > version)

    def heard(self) -> Awaitable[None]:
        """Resolves once any message has come."""
        return self.wait_past(0)


class TokenHub:
    def __init__(self) -> None:
        self._feeds: dict[TurnKey, TurnFeed] = {}
        self._last_sweep = time.monotonic()

    def feed(self, key: TurnKey) -> TurnFeed:
        self._sweep()
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = TurnFeed()
        return feed

    def existing(self, key: TurnKey) -> TurnFeed | None:
        return self._feeds.get(key)

    def open(self, key: TurnKey) -> TurnFeed:
        """The feed, kept at least until `release` is called as often as `open`."""
        feed = self.feed(key)
        feed.readers += 1
        return feed

    @staticmethod
    def release(feed: TurnFeed) -> None:
        feed.readers -= 1
        feed.touched = time.monotonic()

    @contextmanager
    def reading(self, key: TurnKey) -> Iterator[TurnFeed]:
        feed = self.open(key)
        try:
            yield feed
        finally:
            self.release(feed)

    def __len__(self) -> int:
        return len(self._feeds)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY_SECONDS:
            return
        self._last_sweep = now
        stale = [
            key
            for key, feed in self._feeds.items()
            if feed.readers == 0 and now - feed.touched > FEED_TTL_SECONDS
        ]
        for key in stale:
            del self._feeds[key]


class TokenRelayServicer(relay_pb2_grpc.TokenRelayServicer):
    def __init__(self, hub: TokenHub, guard: RelayGuard | None = None) -> None:
        self.hub = hub
        self.guard = guard or RelayGuard(relay_secret.configured())

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # Checked before a single message is read: a refused caller changes nothing.
        refusal = self.guard.refusal(metadata.pairs(context))
        if refusal is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)

    async def Publish(
        self,
        request_iterator: AsyncIterator[relay_pb2.RelayBatch],
        context: grpc.aio.ServicerContext[relay_pb2.RelayBatch, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        await self._admit(context)
        feed: TurnFeed | None = None
        async for batch in request_iterator:
            if feed is None and batch.messages:
                first = batch.messages[0]
                feed = self.hub.feed((first.agent_id, first.message_id))
            if feed is not None:
                metrics.relay_arrived(batch.messages)
                await feed.put(batch.messages)
        return empty_pb2.Empty()

    async def Received(
        self,
        request: relay_pb2.TurnRef,
        context: grpc.aio.ServicerContext[relay_pb2.TurnRef, relay_pb2.RelayBatch],
    ) -> relay_pb2.RelayBatch:
        await self._admit(context)
        feed = self.hub.existing((request.agent_id, request.message_id))
        messages = [] if feed is None else [feed.messages[s] for s in sorted(feed.messages)]
        return relay_pb2.RelayBatch(messages=messages)

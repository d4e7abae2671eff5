"""Sends a turn's messages from the LLM activity to the gateway serving the turn, as they are made.

Best effort by design: the durable record of a turn is the activity's result, so a gateway that is
down or slow must never slow down or fail the generation. Messages queue in memory and go out on
one client-streaming call per attempt; channels are reused across turns. Every call carries the
relay secret shared with the gateways (`ENGRAM_RELAY_SECRET`), and channels use TLS when the
gateways serve it (engram.gateway.tls: `ENGRAM_RELAY_TLS_CA`, ...).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from engram.auth import relay_secret
from engram.gateway.tls import relay_credentials, relay_server_name
from engram.relay.v1 import relay_pb2, relay_pb2_grpc
from engram.v1 import agent_pb2

log = logging.getLogger(__name__)


class RelayChannels:
    """One gRPC channel per gateway address, for the life of the worker.

    The secret and TLS settings are read from the environment when the worker starts, unless
    given; `engram dev` sets them for its own worker before it is built.
    """

    def __init__(
        self, secret: str | None = None, credentials: grpc.ChannelCredentials | None = None
    ) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.metadata = relay_secret.call_metadata(
            relay_secret.configured() if secret is None else secret
        )
        self._credentials = credentials if credentials is not None else relay_credentials()
        name = relay_server_name()
        self._options = [("grpc.ssl_target_name_override", name)] if name else []

    def stub(self, address: str) -> relay_pb2_grpc.TokenRelayStub:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address)
            else:
                channel = grpc.aio.secure_channel(address, self._credentials, self._options)
            self._channels[address] = channel
        return relay_pb2_grpc.TokenRelayStub(channel)


async def received(
    channels: RelayChannels, address: str, agent_id: str, message_id: str, timeout: float = 2.0
) -> list[agent_pb2.ServerMessage]:
    """What the gateway at `address` received for a turn; nothing if it cannot say."""
    if not address:
        return []
    try:
        batch = await channels.stub(address).Received(
            relay_pb2.TurnRef(agent_id=agent_id, message_id=message_id),
            timeout=timeout,
            metadata=channels.metadata,
        )
    except grpc.aio.AioRpcError as err:
        log.warning("gateway %s cannot tell what it received: %s", address, err.code().name)
        return []
    return list(batch.messages)


class TurnPublisher:
    """Publishes one attempt's messages; `send` never blocks and never raises.

    Messages wait in `_pending` until the call to the gateway is ready for them, then go out
    together in one batch. Until then the newest of them may still be added to (`unsent_tail`):
    that is how a fast model's tokens are coalesced when the gateway falls behind.
    """

    def __init__(self, channels: RelayChannels, address: str) -> None:
        self._pending: list[agent_pb2.ServerMessage] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        if address:
            self._task = asyncio.create_task(
                self._run(channels.stub(address), address, channels.metadata)
            )

    def send(self, message: agent_pb2.ServerMessage) -> None:
        if self._task is not None and not self._task.done():
            self._pending.append(message)
            self._ready.set()

    def unsent_tail(self) -> agent_pb2.ServerMessage | None:
        """The last message sent here that has not yet left for the gateway, if any."""
        return self._pending[-1] if self._pending else None

    @property
    def broken(self) -> bool:
        """The gateway could not be reached, or went away mid-turn."""
        return self._task is not None and self._task.done() and not self._closed

    async def close(self, timeout: float = 2.0) -> None:
        """Flush what is queued, waiting at most `timeout` for a slow gateway."""
        if self._task is None:
            return
        self._closed = True
        self._ready.set()
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            self._task.cancel()

    async def _batches(self) -> AsyncIterator[relay_pb2.RelayBatch]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            taken, self._pending = self._pending, []
            if taken:
                yield relay_pb2.RelayBatch(messages=taken)
            if self._closed and not self._pending:
                return

    async def _run(
        self,
        stub: relay_pb2_grpc.TokenRelayStub,
        address: str,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        try:
            await stub.Publish(self._batches(), timeout=900, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            log.warning("token relay to gateway %s failed: %s", address, err.code().name)


class TurnRelay:
    """A turn's messages on their way to a gateway, and to the next one if that gateway dies.

    Every message sent is kept, so a gateway that takes over (a client reconnected there and
    asked to follow the turn) first gets the turn from its start; its feed drops repeats.
    """

    def __init__(self, channels: RelayChannels, address: str) -> None:
        self.channels = channels
        self.address = address
        self.sent: list[agent_pb2.ServerMessage] = []
        self._publisher = TurnPublisher(channels, address)

    @property
    def broken(self) -> bool:
        return self._publisher.broken

    def send(self, message: agent_pb2.ServerMessage) -> None:
        self.sent.append(message)
        self._publisher.send(message)

    def unsent_tail(self) -> agent_pb2.ServerMessage | None:
        return self._publisher.unsent_tail()

    async def redirect(self, address: str) -> None:
        await self._publisher.close(timeout=0.1)
        self.address = address
        self._publisher = TurnPublisher(self.channels, address)
        for message in self.sent:
            self._publisher.send(message)

    async def close(self) -> None:
        await self._publisher.close()

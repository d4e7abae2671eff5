"""The internal TokenRelay serves workers only: a client that knows an agent id and a message id
can neither read a turn's text as it is generated nor inject text into another client's stream.

First against a relay servicer on a real gRPC server (with a positive control: the workers' own
publisher, holding the secret, gets through), then against a whole engine mid-turn.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from engram.activities.relay_publisher import RelayChannels, TurnPublisher, received
from engram.auth import relay_secret
from engram.auth.relay_secret import RelayGuard
from engram.gateway.token_hub import TokenHub, TokenRelayServicer
from engram.relay.v1 import relay_pb2, relay_pb2_grpc
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import create_agent, user_message
from tests.engine import Engine, free_port
from tests.fake_llm import FakeLLM

SECRET = "relay-secret-for-tests"


def forged(agent_id: str, message_id: str, first_seq: int, count: int = 20) -> relay_pb2.RelayBatch:
    """What an attacker would publish: text for the turn's next sequence ids, and an answer."""
    messages = [
        agent_pb2.ServerMessage(
            agent_id=agent_id,
            message_id=message_id,
            sequence_id=seq,
            text=agent_pb2.TextOutput(content="INJECTED "),
        )
        for seq in range(first_seq, first_seq + count)
    ]
    messages.append(
        agent_pb2.ServerMessage(
            agent_id=agent_id,
            message_id=message_id,
            sequence_id=first_seq + count,
            final_answer=agent_pb2.FinalAnswer(content="INJECTED answer"),
        )
    )
    return relay_pb2.RelayBatch(messages=messages)


async def _batches(*batches: relay_pb2.RelayBatch) -> AsyncIterator[relay_pb2.RelayBatch]:
    for batch in batches:
        yield batch


async def test_relay_refuses_callers_without_the_secret() -> None:
    hub = TokenHub()
    server = grpc.aio.server()
    relay_pb2_grpc.add_TokenRelayServicer_to_server(
        TokenRelayServicer(hub, RelayGuard(SECRET)), server
    )
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()
    agent_id, message_id = str(uuid.uuid4()), "m-1"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = relay_pb2_grpc.TokenRelayStub(channel)
            for metadata in ((), relay_secret.call_metadata("guess"), (("x-api-key", SECRET),)):
                with pytest.raises(grpc.aio.AioRpcError) as publish:
                    await stub.Publish(
                        _batches(forged(agent_id, message_id, 1)), metadata=metadata, timeout=5
                    )
                assert publish.value.code() == grpc.StatusCode.PERMISSION_DENIED
                with pytest.raises(grpc.aio.AioRpcError) as read:
                    await stub.Received(
                        relay_pb2.TurnRef(agent_id=agent_id, message_id=message_id),
                        metadata=metadata,
                        timeout=5,
                    )
                assert read.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert hub.existing((agent_id, message_id)) is None  # nothing was stored

        # The workers' own publisher holds the secret and gets through, both ways.
        channels = RelayChannels(secret=SECRET)
        publisher = TurnPublisher(channels, address)
        for message in forged(agent_id, message_id, 1, count=3).messages:
            publisher.send(message)
        await publisher.close()
        assert not publisher.broken
        feed = hub.existing((agent_id, message_id))
        assert feed is not None and sorted(feed.messages) == [1, 2, 3, 4]
        back = await received(channels, address, agent_id, message_id)
        assert [m.sequence_id for m in back] == [1, 2, 3, 4]
        # A worker with another secret is refused (and says so in its log, not to the client).
        assert await received(RelayChannels(secret="other"), address, agent_id, message_id) == []
    finally:
        await server.stop(None)


def test_relay_without_a_secret_is_open_only_while_auth_is_off() -> None:
    auth = {"required": False}
    guard = RelayGuard("", lambda: auth["required"])
    assert guard.refusal([]) is None  # `engram dev` without keys, as before
    auth["required"] = True
    assert guard.refusal([]) is not None
    assert guard.refusal([(relay_secret.METADATA_KEY, "anything")]) is not None
    keyed = RelayGuard(SECRET)
    assert keyed.refusal([(relay_secret.METADATA_KEY, SECRET)]) is None
    assert keyed.refusal([(relay_secret.METADATA_KEY, SECRET + "x")]) is not None
    assert keyed.refusal([(relay_secret.METADATA_KEY, SECRET.encode())]) is None


def test_a_client_cannot_read_or_inject_a_live_turn(engine: Engine, llm: FakeLLM) -> None:
    stub = engine.stub()
    agent_id = create_agent(stub)
    first_seq = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).last_sequence_id + 1
    message_id = f"victim-{uuid.uuid4()}"
    words = [f"w{i}" for i in range(30)]
    llm.reply = lambda messages: " ".join(words)
    llm.ttft, llm.token_delay = 0.8, 0.04

    got: list[tuple[float, agent_pb2.ServerMessage]] = []
    started = time.monotonic()

    def client() -> None:
        requests: Iterator[agent_pb2.ClientMessage] = iter(
            [user_message(agent_id, "the real question", message_id)]
        )
        for message in stub.Chat(requests, timeout=60):
            got.append((time.monotonic() - started, message))

    reader = threading.Thread(target=client, daemon=True)
    reader.start()

    # While the model is still thinking, a client tries the relay with everything it knows.
    async def attack() -> list[grpc.StatusCode]:
        codes = []
        async with grpc.aio.insecure_channel(engine.address) as channel:
            relay = relay_pb2_grpc.TokenRelayStub(channel)
            for metadata in ((), relay_secret.call_metadata("guessed-secret")):
                try:
                    await relay.Publish(
                        _batches(forged(agent_id, message_id, first_seq)),
                        metadata=metadata,
                        timeout=5,
                    )
                except grpc.aio.AioRpcError as err:
                    codes.append(err.code())
                try:
                    await relay.Received(
                        relay_pb2.TurnRef(agent_id=agent_id, message_id=message_id),
                        metadata=metadata,
                        timeout=5,
                    )
                except grpc.aio.AioRpcError as err:
                    codes.append(err.code())
        return codes

    time.sleep(0.3)
    assert asyncio.run(attack()) == [grpc.StatusCode.PERMISSION_DENIED] * 4
    reader.join(30)
    assert not reader.is_alive()

    messages = [m for _, m in got]
    assert not any("INJECTED" in str(m) for m in messages)
    texts = [(at, m.text.content) for at, m in got if m.HasField("text")]
    finals = [(at, m.final_answer.content) for at, m in got if m.HasField("final_answer")]
    assert finals and finals[-1][1] == " ".join(words)
    assert "".join(t for _, t in texts) == " ".join(words)
    # Tokens still came live, through the relay (the worker holds the engine's secret): the first
    # well before the last.
    assert finals[-1][0] - texts[0][0] > 0.5, (texts[0][0], finals[-1][0])
    history = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(engine.address)).GetHistory(
        agent_pb2.GetHistoryRequest(agent_id=agent_id)
    )
    assert [t.reply for t in history.turns] == [" ".join(words)]

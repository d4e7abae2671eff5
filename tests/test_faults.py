"""Operators restart anything at any moment: clients see nothing lost and nothing doubled.

Every process here is real and is killed with SIGKILL, except where a test checks graceful
shutdown (SIGTERM).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import Cluster
from tests.conftest import (
    Reader,
    chat,
    create_agent,
    finals,
    text_of,
    unique,
    user_message,
    without_time,
)
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.chaos

REPLY = "".join(f"w{i} " for i in range(60))


@pytest.fixture
def cluster(tmp_path: Path, llm: FakeLLM) -> Iterator[Cluster]:
    llm.token_delay = 0.05  # about three seconds a reply
    llm.reply = lambda _: REPLY
    c = Cluster(tmp_path, llm.url)
    c.start_temporal()
    yield c
    c.stop()


def assert_exactly_once(messages: list[agent_pb2.ServerMessage]) -> None:
    seqs = [m.sequence_id for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def shown_reply(messages: list[agent_pb2.ServerMessage]) -> str:
    """The text a client shows: what came after the last `restarting` notice."""
    start = max(
        (i + 1 for i, m in enumerate(messages) if m.status.status == "restarting"), default=0
    )
    return text_of(messages[start:])


def test_worker_killed_mid_stream(cluster: Cluster, llm: FakeLLM) -> None:
    worker = cluster.start_worker()
    _, address = cluster.start_gateway()
    stub = cluster.stub(address)
    agent_id = create_agent(stub)
    content = unique("survive a worker crash")
    reader = Reader(stub.Chat(iter([user_message(agent_id, content)]), timeout=90))
    reader.wait_for_texts(10)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    cluster.start_worker()

    assert reader.done.wait(60) and reader.error is None, reader.error
    messages = reader.messages
    assert_exactly_once(messages)
    assert sum(1 for m in messages if m.status.status == "restarting") == 1
    assert shown_reply(messages) == REPLY
    assert finals(messages) == [REPLY]
    assert len(llm.requests_for(content)) == 2  # regenerated once, never continued blindly
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [(t.outcome, t.reply) for t in turns] == [("completed", REPLY)]
    # What the client saw is exactly the stored record.
    stored = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=10))
    assert [(m.sequence_id, m.WhichOneof("payload"), m.text.content) for m in stored] == [
        (m.sequence_id, m.WhichOneof("payload"), m.text.content) for m in messages
    ]


def test_gateway_killed_mid_turn(cluster: Cluster, llm: FakeLLM) -> None:
    cluster.start_worker()
    gateway_a, address_a = cluster.start_gateway()
    _, address_b = cluster.start_gateway()
    stub_a, stub_b = cluster.stub(address_a), cluster.stub(address_b)
    agent_id = create_agent(stub_a)
    content = unique("survive a gateway crash")
    reader = Reader(stub_a.Chat(iter([user_message(agent_id, content, "msg-1")]), timeout=60))
    reader.wait_for_texts(5)
    gateway_a.send_signal(signal.SIGKILL)
    assert reader.done.wait(10) and reader.error is not None
    seen = reader.messages
    last = seen[-1].sequence_id

    arrivals: list[float] = []
    rest: list[agent_pb2.ServerMessage] = []
    for message in stub_b.Replay(
        agent_pb2.ReplayRequest(agent_id=agent_id, from_sequence=last), timeout=60
    ):
        arrivals.append(time.monotonic())
        rest.append(message)
    assert rest[0].sequence_id == last + 1
    # The rest of the reply streamed live through the new gateway, not all at once at the end.
    texts = [t for t, m in zip(arrivals, rest, strict=True) if m.HasField("text")]
    assert arrivals[-1] - texts[len(texts) // 2] > 0.5
    assert_exactly_once(seen + rest)
    assert finals(rest) == [REPLY] and shown_reply(seen + rest) == REPLY

    # Resending the same message through the other gateway returns that turn, not a new one.
    again = chat(stub_b, agent_id, content, message_id="msg-1")
    assert [m.sequence_id for m in again] == [m.sequence_id for m in seen + rest]
    assert len(llm.requests_for(content)) == 1


def test_temporal_server_killed_mid_turn(cluster: Cluster, llm: FakeLLM) -> None:
    cluster.start_worker()
    _, address = cluster.start_gateway()
    stub = cluster.stub(address)
    agent_id = create_agent(stub)
    first = chat(stub, agent_id, unique("before the crash"))
    content = unique("during the crash")
    reader = Reader(stub.Chat(iter([user_message(agent_id, content)]), timeout=90))
    reader.wait_for_texts(5)
    cluster.kill_temporal()
    time.sleep(1)
    cluster.start_temporal()

    deadline = time.monotonic() + 60
    while True:
        try:
            turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id), timeout=5).turns
            if len(turns) == 2 and turns[1].outcome:
                break
        except grpc.RpcError:
            pass
        assert time.monotonic() < deadline, "the turn did not complete after the restart"
        time.sleep(0.5)
    assert [(t.outcome, t.reply) for t in turns] == [
        ("completed", finals(first)[0]),
        ("completed", REPLY),
    ]
    reader.done.wait(60)
    # Whatever the client got before and after, it agrees with the record (live messages are
    # stamped when made, stored ones when recorded).
    stored = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=10))
    by_seq = {m.sequence_id: without_time(m) for m in stored}
    assert reader.messages
    for message in reader.messages:
        assert by_seq[message.sequence_id] == without_time(message)


def test_sigterm_drains_worker_and_gateway(cluster: Cluster, llm: FakeLLM) -> None:
    worker = cluster.start_worker()
    gateway, address = cluster.start_gateway()
    stub = cluster.stub(address)
    agent_id = create_agent(stub)
    reader = Reader(stub.Chat(iter([user_message(agent_id, unique("drain me"))]), timeout=60))
    reader.wait_for_texts(5)
    start = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    gateway.send_signal(signal.SIGTERM)
    cluster.start_worker()  # to record the turn's end once the draining worker is gone
    assert worker.wait(20) == 0 and gateway.wait(20) == 0
    assert time.monotonic() - start < 15
    assert reader.done.wait(30) and reader.error is None
    # The generation in progress finished where it was: no restart.
    assert not any(m.status.status == "restarting" for m in reader.messages)
    assert finals(reader.messages) == [REPLY]
    assert_exactly_once(reader.messages)


def test_client_disconnect_mid_reply(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    llm.token_delay = 0.02
    llm.reply = lambda _: REPLY
    agent_id = create_agent(stub)
    call = stub.Chat(iter([user_message(agent_id, "talk to yourself")]), timeout=30)
    for message in call:
        if message.HasField("text"):
            break
    call.cancel()
    deadline = time.monotonic() + 20
    while not (turns := stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns)[
        0
    ].outcome:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (turns[0].outcome, turns[0].reply) == ("completed", REPLY)

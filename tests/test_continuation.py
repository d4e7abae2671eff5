"""A reply cut off mid-stream (the endpoint drops the connection, the worker is SIGKILLed) is
resumed down to the last token when the endpoint can continue a partial assistant message: the
retry sends what the client was shown as the start of the reply and streams only the rest. The
client sees no `restarting` notice, no repeated text, contiguous sequence ids, and a final answer
equal to everything it was shown."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import Cluster
from tests.conftest import Reader, create_agent, finals, text_of, unique, user_message
from tests.fake_llm import FakeLLM

pytestmark = pytest.mark.chaos

REPLY = "".join(f"w{i} " for i in range(60))


@pytest.fixture
def cluster(tmp_path: Path, llm: FakeLLM) -> Iterator[Cluster]:
    llm.token_delay = 0.03
    llm.reply = lambda _: REPLY
    c = Cluster(tmp_path, llm.url, ENGRAM_LLM_CONTINUATION="prefill")
    c.start_temporal()
    yield c
    c.stop()


def follow(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, content: str) -> Reader:
    return Reader(stub.Chat(iter([user_message(agent_id, content)]), timeout=90))


def assert_resumed(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, reader: Reader, llm: FakeLLM, content: str
) -> None:
    assert reader.done.wait(60) and reader.error is None, reader.error
    messages = reader.messages
    seqs = [m.sequence_id for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert not any(m.status.status == "restarting" for m in messages)
    assert text_of(messages) == REPLY and finals(messages) == [REPLY]
    first, again = llm.requests_for(content)
    shown = again["messages"][-1]
    assert shown["role"] == "assistant" and REPLY.startswith(shown["content"]) and shown["content"]
    assert first["messages"][-1]["role"] == "user"
    # What the client saw is exactly the stored record.
    replayed = stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=10)
    stored = [m for m in replayed if m.message_id == messages[0].message_id]
    assert [m.SerializeToString() for m in stored] == [m.SerializeToString() for m in messages]


def test_a_cut_off_reply_goes_on_from_its_last_token(cluster: Cluster, llm: FakeLLM) -> None:
    worker = cluster.start_worker()
    _, address = cluster.start_gateway()
    stub = cluster.stub(address)
    agent_id = create_agent(stub)

    # The endpoint drops the connection after 20 tokens.
    llm.cut_after = 20
    content = unique("survive a dropped stream")
    assert_resumed(stub, agent_id, follow(stub, agent_id, content), llm, content)

    # The worker is killed mid-reply.
    content = unique("survive a worker crash")
    reader = follow(stub, agent_id, content)
    reader.wait_for_texts(15)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    # vLLM is told to go on from the partial message rather than start a new one.
    cluster.env["ENGRAM_LLM_CONTINUATION"] = "vllm"
    cluster.start_worker()
    assert_resumed(stub, agent_id, reader, llm, content)
    again = llm.requests_for(content)[1]
    assert (again["continue_final_message"], again["add_generation_prompt"]) == (True, False)
    assert llm.continued == 2

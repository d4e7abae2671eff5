"""`engram dev` with nothing configured answers with the real local model (SmolLM2 on llama.cpp),
and a reply cut off by a worker crash is generated again by that model's server.

Slow (a real model on the CPU); deselect with `-m "not local_model"`. CI runs it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram import local_model
from engram.processes import wait_for_port
from engram.v1 import agent_pb2
from tests.cluster import Cluster
from tests.conftest import Reader, chat, create_agent, finals, text_of, user_message
from tests.engine import Engine, children, free_port

pytestmark = pytest.mark.local_model


@pytest.fixture(scope="module")
def local_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if not local_model.available():
        pytest.fail("the local model is not installed: run ./scripts/test (it installs it)")
    if local_model.ollama_is_running():
        pytest.skip("Ollama is running here, so engram dev would rightly use it instead")
    for name in ("ENGRAM_LLM_BASE_URL", "OPENAI_BASE_URL"):
        os.environ.pop(name, None)
    engine = Engine(tmp_path_factory.mktemp("local"), llm_url=None).start(timeout=180)
    yield engine
    engine.stop()


def test_dev_answers_with_the_local_model(local_engine: Engine) -> None:
    assert "local smollm2-135m-instruct" in local_engine.log()
    stub = local_engine.stub()
    agent_id = create_agent(stub, model="llama3.1:70b", system_prompt="Answer in one sentence.")

    first = chat(stub, agent_id, "What is the capital of France?")
    texts = [m.text.content for m in first if m.HasField("text")]
    assert len(texts) >= 3, first
    [answer] = finals(first)
    assert answer.strip() and answer == text_of(first)
    notices = [m.status for m in first if m.status.status == "model_substituted"]
    assert len(notices) == 1 and "llama3.1:70b" in notices[0].message

    second = chat(stub, agent_id, "Say that again, briefly.")
    assert finals(second) and finals(second)[0].strip()
    assert not any(m.status.status == "model_substituted" for m in second)  # told once
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [t.outcome for t in turns] == ["completed", "completed"]
    assert turns[0].user == "What is the capital of France?" and turns[0].reply == answer
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    assert agent.model == "llama3.1:70b" and agent.stats.tokens_used > 0


def children_running(parent: int, needle: str) -> list[int]:
    return [pid for pid, cmdline in children(parent) if needle in cmdline]


@pytest.mark.chaos
def test_local_model_server_is_restarted_when_it_dies(local_engine: Engine) -> None:
    assert local_engine.process is not None
    [server] = children_running(local_engine.process.pid, "llama_cpp.server")
    os.kill(server, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while "restarting it" not in local_engine.log():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stub = local_engine.stub()
    agent_id = create_agent(stub, model="any-model")
    deadline = time.monotonic() + 120
    while True:  # the first request after the restart waits for the model to load
        messages = chat(stub, agent_id, "Hello!")
        if finals(messages) or time.monotonic() > deadline:
            break
    assert finals(messages) and finals(messages)[0].strip()
    [restarted] = children_running(local_engine.process.pid, "llama_cpp.server")
    assert restarted != server


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[str]:
    """The local model's server on its own, as `engram dev` runs it; its base URL."""
    model = local_model.model_file()
    if model is None:
        pytest.fail("the local model is not installed: run ./scripts/test (it installs it)")
    port = free_port()
    process = local_model.LocalModelServer(model, port, tmp_path / "model.log").spawn()
    try:
        asyncio.run(wait_for_port("127.0.0.1", port, process, 120, "the local model"))
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.kill()
        process.wait()


@pytest.mark.chaos
def test_a_local_reply_cut_off_by_a_worker_crash_is_generated_again(
    tmp_path: Path, model_server: str
) -> None:
    """llama-cpp-python's server starts a new reply after a partial assistant message instead of
    continuing it, so Engram keeps its regenerate path for this endpoint (continuation off, the
    default): the client is told `restarting`, then shown the new reply whole, once."""
    cluster = Cluster(tmp_path, model_server)
    cluster.start_temporal()
    try:
        worker = cluster.start_worker()
        _, address = cluster.start_gateway()
        stub = cluster.stub(address)
        agent_id = create_agent(
            stub, model=local_model.MODEL_ALIAS, system_prompt="Answer in five sentences."
        )
        content = "Tell me about the history of sailing ships."
        reader = Reader(stub.Chat(iter([user_message(agent_id, content)]), timeout=180))
        reader.wait_for_texts(5, timeout=90)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        cluster.start_worker()

        assert reader.done.wait(150) and reader.error is None, reader.error
        messages = reader.messages
        seqs = [m.sequence_id for m in messages]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        restarts = [i for i, m in enumerate(messages) if m.status.status == "restarting"]
        assert len(restarts) == 1
        assert text_of(messages[: restarts[0]]).strip()  # cut off mid-reply
        [reply] = finals(messages)
        assert reply.strip() and reply == text_of(messages[restarts[0] + 1 :])
        turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
        assert [(t.outcome, t.reply) for t in turns] == [("completed", reply)]
        stored = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=10))
        assert [m.SerializeToString() for m in stored] == [m.SerializeToString() for m in messages]
    finally:
        cluster.stop()

"""Agents outlive their workflow runs: continue-as-new and the transcript store lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2
from tests.conftest import create_agent, finals, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM


@pytest.fixture(scope="module")
def short_runs(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine whose agents continue-as-new every dozen turns or so."""
    engine = Engine(
        tmp_path_factory.mktemp("long-life"), fake_llm.url, ENGRAM_MAX_HISTORY_EVENTS="150"
    ).start()
    yield engine
    engine.stop()


def runs_of(engine: Engine, agent_id: str) -> list[str]:
    async def statuses() -> list[str]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        query = f"WorkflowId = '{WORKFLOW_ID_PREFIX}{agent_id}'"
        return [e.status.name if e.status else "" async for e in client.list_workflows(query)]

    return asyncio.run(statuses())


def without_time(message: agent_pb2.ServerMessage) -> bytes:
    copy = agent_pb2.ServerMessage()
    copy.CopyFrom(message)
    copy.ClearField("timestamp")
    return copy.SerializeToString(deterministic=True)


def test_many_long_turns_across_runs(short_runs: Engine, llm: FakeLLM) -> None:
    # Long replies: thousands of stream messages, far more than the workflow keeps in its state.
    llm.reply = lambda messages: f"reply to {messages[-1]['content']}: " + "tok " * 150
    stub = short_runs.stub()
    agent_id = create_agent(stub)
    seen: list[agent_pb2.ServerMessage] = []
    contents = [f"message {i}: remember the number {i * 7}" for i in range(40)]
    # Several messages per stream, so some are queued when a run ends.
    for i in range(0, len(contents), 4):
        seen += stub.Chat(iter(user_message(agent_id, c) for c in contents[i : i + 4]), timeout=60)

    assert finals(seen) == [llm.reply([{"content": c}]) for c in contents]
    assert [m.sequence_id for m in seen] == list(range(1, len(seen) + 1))
    assert runs_of(short_runs, agent_id).count("CONTINUED_AS_NEW") >= 2

    # Everything the client saw can be replayed, from the store and the current run alike.
    replayed = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=30))
    assert [without_time(m) for m in replayed] == [without_time(m) for m in seen]
    middle = seen[len(seen) // 2].sequence_id
    tail = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, from_sequence=middle)))
    assert [m.sequence_id for m in tail] == [m.sequence_id for m in seen if m.sequence_id > middle]

    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [t.user for t in turns] == contents
    assert {t.outcome for t in turns} == {"completed"}
    # The agent still has the whole conversation in mind.
    last_request = llm.requests_for(contents[-1])[-1]["messages"]
    assert last_request[1]["content"] == contents[0]
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    assert agent.stats.total_steps == len(contents)
    assert agent.last_sequence_id == seen[-1].sequence_id


def test_resending_an_archived_turn(short_runs: Engine, llm: FakeLLM) -> None:
    stub = short_runs.stub()
    agent_id = create_agent(stub)
    first = list(stub.Chat(iter([user_message(agent_id, "first", "m-0")]), timeout=30))
    llm.reply = lambda _: "tok " * 200
    for i in range(1, 25):
        list(stub.Chat(iter([user_message(agent_id, f"more {i}", f"m-{i}")]), timeout=30))
    assert runs_of(short_runs, agent_id).count("CONTINUED_AS_NEW") >= 1
    again = list(stub.Chat(iter([user_message(agent_id, "first", "m-0")]), timeout=30))
    assert [without_time(m) for m in again] == [without_time(m) for m in first]

"""Agents outlive their workflow runs: continue-as-new and the transcript store lose nothing."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.codec.claim_check import payload_bytes
from engram.v1 import agent_pb2
from engram.workflows.prompt import estimate_tokens
from engram.workflows.types import ChatMessage
from tests.conftest import create_agent, finals, user_message, without_time
from tests.engine import Engine
from tests.fake_llm import FakeLLM, ToolUse, note_taker


@pytest.fixture(scope="module")
def short_runs(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine whose agents continue-as-new every dozen turns or so."""
    engine = Engine(
        tmp_path_factory.mktemp("long-life"),
        fake_llm.url,
        ENGRAM_MAX_HISTORY_EVENTS="150",
        # Fifty messages down one stream at a time.
        ENGRAM_MAX_STREAM_INPUTS="64",
        ENGRAM_MAX_AGENT_INPUTS="64",
    ).start()
    yield engine
    engine.stop()


def runs_of(engine: Engine, agent_id: str) -> list[str]:
    async def statuses() -> list[str]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        query = f"WorkflowId = '{WORKFLOW_ID_PREFIX}{agent_id}'"
        return [e.status.name if e.status else "" async for e in client.list_workflows(query)]

    return asyncio.run(statuses())


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
    # The agent still has the whole conversation in mind, verbatim or through its summary.
    last_request = llm.requests_for(contents[-1])[-1]["messages"]
    assert any(contents[0] in m["content"] for m in last_request)
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


SUMMARIZER = "You keep the memory of a long conversation"


def remembering_llm(messages: list[dict[str, str]]) -> str:
    """Replies briefly; asked to summarize, keeps the sentences that state facts."""
    if SUMMARIZER in messages[0]["content"]:
        facts = re.findall(r"[^.:\n]*(?:locker code|my name)[^.\n]*\.", messages[-1]["content"])
        return " ".join(dict.fromkeys(f.strip() for f in facts))
    return "Noted. " + "filler " * 20


def test_compaction_keeps_early_facts_in_the_summary(short_runs: Engine, llm: FakeLLM) -> None:
    llm.reply = remembering_llm
    stub = short_runs.stub()
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=400))
    contents = ["My name is Ada and my locker code is 4711."]
    contents += [f"Filler message {i}: " + "padding " * 30 for i in range(30)]
    contents += ["What is my locker code?"]
    for content in contents:
        assert finals(list(stub.Chat(iter([user_message(agent_id, content)]), timeout=30)))

    sent = llm.requests_for("What is my locker code?")[-1]["messages"]
    assert not any(m["content"] == contents[0] for m in sent)  # compacted away...
    assert "my locker code is 4711" in sent[0]["content"]  # ...but remembered
    assert sum(estimate_tokens(ChatMessage(m["role"], m["content"])) for m in sent) <= 400
    assert llm.requests_for("Summary so far")  # the summary was made by the LLM
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [t.user for t in turns] == contents
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    assert agent.stats.total_steps == len(contents)


def test_memory_notes_outlive_compaction_and_runs(short_runs: Engine, llm: FakeLLM) -> None:
    llm.reply = lambda m: remembering_llm(m) if SUMMARIZER in m[0]["content"] else note_taker(m)
    stub = short_runs.stub()
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=400))
    contents = ["remember door_code: 8642", "remember user_name: Ada"]
    contents += [f"Filler message {i}: " + "padding " * 30 for i in range(30)]
    contents += ["remember user_name: Ada Lovelace", "What is the door code?"]
    for content in contents:
        assert finals(list(stub.Chat(iter([user_message(agent_id, content)]), timeout=30)))

    assert runs_of(short_runs, agent_id).count("CONTINUED_AS_NEW") >= 1
    system = llm.requests_for("What is the door code?")[-1]["messages"][0]["content"]
    # Neither the verbatim turns nor the summary hold the code any more; the notes do.
    assert "- door_code: 8642" in system and "- user_name: Ada Lovelace" in system
    assert system.count("8642") == 1
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    assert [(n.name, n.content) for n in agent.memory] == [
        ("door_code", "8642"),
        ("user_name", "Ada Lovelace"),
    ]


BIKE_LOCK = "turn 2: the code of my bike lock is 2817."
BIKE_QUESTION = "What was the code of my bike lock?"


def recalling_llm(messages: list[dict[str, str]]) -> str | ToolUse:
    """remembering_llm, whose summaries keep only names and locker codes; asked about the bike
    lock, it looks the answer up with `recall` and quotes what it found."""
    if messages[-1]["role"] == "tool":
        return f"Found: {messages[-1]['content']}"
    if messages[-1]["content"] == BIKE_QUESTION:
        return ToolUse([("recall", '{"query": "bike lock"}')])
    return remembering_llm(messages)


def test_two_thousand_turns(short_runs: Engine, llm: FakeLLM) -> None:
    llm.reply = recalling_llm
    stub = short_runs.stub()
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=600))
    contents = ["My name is Ada and my locker code is 4711.", "turn 1", BIKE_LOCK]
    contents += [f"turn {i}" for i in range(3, 1998)]
    contents += ["What is my locker code?", BIKE_QUESTION]
    for i in range(0, len(contents), 50):
        replies = list(
            stub.Chat(iter(user_message(agent_id, c) for c in contents[i : i + 50]), timeout=120)
        )
        assert len(finals(replies)) == len(contents[i : i + 50])

    assert runs_of(short_runs, agent_id).count("CONTINUED_AS_NEW") >= 5
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [t.user for t in turns] == contents
    sent = llm.requests_for("What is my locker code?")[-1]["messages"]
    assert "my locker code is 4711" in sent[0]["content"]
    # The bike lock of turn 3 left the prompt and the summary 2,000 turns ago; `recall` finds
    # it in the whole transcript, word for word.
    asked = llm.requests_for(BIKE_QUESTION)[0]["messages"]
    assert not any("2817" in str(m.get("content")) for m in asked)
    assert BIKE_LOCK in turns[-1].reply
    # The state each run starts from stays small.
    sizes = asyncio.run(run_input_sizes(short_runs, agent_id))
    assert max(sizes) < 128 * 1024, sizes


async def run_input_sizes(engine: Engine, agent_id: str) -> list[int]:
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    sizes = []
    query = f"WorkflowId = '{WORKFLOW_ID_PREFIX}{agent_id}'"
    async for execution in client.list_workflows(query):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            started = event.workflow_execution_started_event_attributes
            sizes.append(sum(payload_bytes(p) for p in started.input.payloads))
            break
    return sizes


@pytest.mark.chaos
def test_engine_killed_during_compaction(tmp_path: Path, llm: FakeLLM) -> None:
    summarizing = threading.Event()

    def slow_summaries(messages: list[dict[str, str]]) -> str:
        if SUMMARIZER in messages[0]["content"]:
            summarizing.set()
            time.sleep(3)  # the engine dies while this request is open
        return remembering_llm(messages)

    llm.reply = slow_summaries
    engine = Engine(tmp_path / "data", llm.url).start()
    try:
        stub = engine.stub()
        agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=300))
        contents = ["My name is Ada and my locker code is 4711."]
        contents += [f"Filler {i}: " + "padding " * 30 for i in range(12)]
        seen: list[agent_pb2.ServerMessage] = []
        for content in contents:
            seen += stub.Chat(iter([user_message(agent_id, content)]), timeout=30)
            if summarizing.is_set():
                break
        assert summarizing.wait(10)
        engine.kill()

        engine.start()
        stub = engine.stub()
        llm.reply = remembering_llm
        sent = len(
            [m for m in seen if m.HasField("final_answer")]
        )  # turns answered before the kill
        for content in [*contents[sent:], "What is my locker code?"]:
            seen += stub.Chat(iter([user_message(agent_id, content)]), timeout=60)
        turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
        assert [t.user for t in turns] == [*contents, "What is my locker code?"]
        assert [m.sequence_id for m in seen] == list(range(1, len(seen) + 1))
        last = llm.requests_for("What is my locker code?")[-1]["messages"]
        assert "my locker code is 4711" in last[0]["content"]
    finally:
        engine.stop()


@pytest.mark.chaos
def test_engine_killed_at_continue_as_new(tmp_path: Path, llm: FakeLLM) -> None:
    """SIGKILL the whole engine right after turns that take a run past its bound (about every
    fifth turn here), several times: the run continues-as-new in that turn's last workflow task,
    so the kill lands just before, during or just after it."""
    engine = Engine(tmp_path / "data", llm.url, ENGRAM_MAX_HISTORY_EVENTS="60").start()
    try:
        stub = engine.stub()
        agent_id = create_agent(stub)
        seen: list[agent_pb2.ServerMessage] = []
        contents = [f"fact {i}: the code is {1000 + i}." for i in range(24)]
        for i, content in enumerate(contents):
            seen += stub.Chat(iter([user_message(agent_id, content)]), timeout=60)
            if i % 6 == 5:
                engine.kill()
                engine.start()
                stub = engine.stub()
        assert runs_of(engine, agent_id).count("CONTINUED_AS_NEW") >= 2
        assert finals(seen) == [f"You said: {c}" for c in contents]
        assert [m.sequence_id for m in seen] == list(range(1, len(seen) + 1))
        turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
        assert [t.user for t in turns] == contents
        replayed = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=30))
        assert [without_time(m) for m in replayed] == [without_time(m) for m in seen]
    finally:
        engine.stop()

"""A chat turn's history costs the same whatever the size of its message and reply: the text lives
in the blob store, and the prompt names what it already holds by hash."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.codec.claim_check import HISTORY_INLINE_BYTES, stays_inline
from engram.codec.keyring import Keyring
from engram.codec.payload_codec import PLAIN, PayloadCipher
from engram.v1 import agent_pb2
from engram.v1.agent_pb2_grpc import AgentServiceStub as Stub
from engram.vocabulary import EventKind
from engram.workflows.types import Event, EventsPage, LLMRequest
from tests.conftest import chat, chat_in_background, create_agent, eventually, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM, ToolUse

LONG = 20_000


def history_bytes(engine: Engine, agent_id: str) -> int:
    async def measure() -> int:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        history = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).fetch_history()
        return sum(event.ByteSize() for event in history.events)

    return asyncio.run(measure())


def turn_cost(engine: Engine, stub: Stub, agent_id: str, text: str) -> int:
    before = history_bytes(engine, agent_id)
    assert finals(chat(stub, agent_id, text)) == [f"You said: {text}"]
    return history_bytes(engine, agent_id) - before


def test_history_per_turn_does_not_grow_with_the_message(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    config = agent_pb2.AgentConfig(max_context_tokens=200_000)
    short_agent = create_agent(stub, config=config)
    long_agent = create_agent(stub, config=config)
    short = [turn_cost(engine, stub, short_agent, f"turn {i}: " + "x" * 90) for i in range(3)]
    sent_before = len(llm.requests)
    long = [turn_cost(engine, stub, long_agent, f"turn {i}: " + "y" * LONG) for i in range(3)]
    # Each long turn is asked 20 KB and answers as much, and its prompt holds the earlier ones...
    prompts = [r["messages"] for r in llm.requests[sent_before:]]
    assert sum(len(m["content"]) for m in prompts[-1]) > 5 * LONG
    # ...yet costs its history about what a 100-character turn does.
    assert max(long) <= max(short) + 2 * HISTORY_INLINE_BYTES, (short, long)
    # A chat turn's budget: 3 KB, whatever its size. A run's first turn is over it by a patch
    # marker and a search attribute upsert for each patch it meets, once per run.
    assert max(short[1:] + long[1:]) <= 3 * 1024, (short, long)


def test_query_answers_stay_inline_and_everything_else_leaves() -> None:
    """Answers to queries are never in history and a follower asks for them again and again: the
    blob store would fill with copies. Everything else past HISTORY_INLINE_BYTES leaves."""
    keyring = Keyring.parse("k1:" + base64.b64encode(b"k" * 32).decode())
    # Text that does not compress: the encrypting codec compresses first.
    words = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(100)]
    events = [Event(seq=i, kind=EventKind.TEXT, text=w) for i, w in enumerate(words)]
    request = LLMRequest(
        agent_id="a", message_id="m", model="x", messages=[], prelude=events, first_text_seq=1
    )
    plain = PLAIN.payload_converter.to_payloads([EventsPage(events), request])
    cipher = PayloadCipher(keyring)
    for answer, prompt in (plain, [cipher.encode(p) for p in plain]):
        assert answer.ByteSize() > HISTORY_INLINE_BYTES and prompt.ByteSize() > 4_000
        assert stays_inline(answer) and not stays_inline(prompt)


def history(engine: Engine, agent_id: str) -> list[HistoryEvent]:
    async def fetch() -> list[HistoryEvent]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        history = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).fetch_history()
        return list(history.events)

    return asyncio.run(fetch())


def get(stub: Stub, agent_id: str) -> agent_pb2.Agent:
    agent: agent_pb2.Agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    return agent


def listed(stub: Stub, status: str, agent_id: str) -> bool:
    agents = stub.ListAgents(agent_pb2.ListAgentsRequest(status_filter=status, page_size=1000))
    return any(a.agent_id == agent_id for a in agents.agents)


def test_a_chat_turn_costs_at_most_11_events_and_records_no_passing_status(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    # The first turn of a run records the patches' markers: measure the ones after it.
    assert finals(chat(stub, agent_id, "first")) == ["You said: first"]
    for i in range(3):
        before = history(engine, agent_id)
        assert finals(chat(stub, agent_id, f"turn {i}")) == [f"You said: turn {i}"]
        added = history(engine, agent_id)[len(before) :]
        kinds = [EventType.Name(e.event_type) for e in added]
        assert len(added) <= 11, kinds
        assert "EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES" not in kinds


def test_statuses_during_and_after_a_chat_turn(engine: Engine, stub: Stub, llm: FakeLLM) -> None:
    llm.token_delay = 0.2
    agent_id = create_agent(stub)
    reader = chat_in_background(stub, agent_id, "take your time")
    eventually(lambda: any(m.HasField("text") for m in reader.messages))
    # GetAgent asks the agent; ListAgents files it under its lasting status, and its `thinking`
    # filter asks the agents that may be answering.
    assert get(stub, agent_id).status == "thinking"
    assert listed(stub, "thinking", agent_id)
    eventually(lambda: listed(stub, "idle", agent_id))
    assert reader.done.wait(30)
    llm.token_delay = 0.0
    assert get(stub, agent_id).status == "idle"
    assert not listed(stub, "thinking", agent_id)
    assert listed(stub, "idle", agent_id)


def test_a_tool_step_costs_at_most_12_events(engine: Engine, stub: Stub, llm: FakeLLM) -> None:
    steps = 6
    asked = 0

    def model(messages: list[dict[str, Any]]) -> ToolUse:
        nonlocal asked
        asked += 1
        if asked > steps:
            return ToolUse([("finish", '{"answer": "done"}')])
        return ToolUse([("add", f'{{"a": {asked}, "b": 1}}')])

    llm.reply = model
    agent_id = create_agent(
        stub,
        goal="Add numbers, one step at a time.",
        tools=[agent_pb2.Tool(name="add")],
        config=agent_pb2.AgentConfig(autonomous=True, max_steps=steps + 10),
    )
    eventually(
        lambda: (
            get(stub, agent_id).stats.total_steps > 0 and not get(stub, agent_id).HasField("run")
        ),
        30,
    )
    events = history(engine, agent_id)
    # A step starts when its LLM call is scheduled; the first and the last (finish) are left out.
    starts = [
        i
        for i, e in enumerate(events)
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "stream_chat"
    ]
    assert len(starts) == steps + 1
    for start, end in itertools.pairwise(starts[1:]):
        step = events[start:end]
        kinds = [EventType.Name(e.event_type) for e in step]
        assert len(step) <= 12, kinds
        # At most 4 KB, whatever the prompt, the tools' schemas or the tool's output: each payload
        # past the claim check's threshold is a reference.
        assert sum(e.ByteSize() for e in step) <= 4_000, kinds
    # The calls were shown to the client by their tools' activities, not by announcements.
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled.count("tool:add") == steps and "announce" not in scheduled

"""Fast read-only tools run as local activities (behind the local-fast-tools patch).

A worker tool declared `@tool(read_only=True, fast=True)` runs in the workflow's own worker,
recorded as a marker, without a round trip through the server; one that fails there runs again as
a regular activity. The tools are tests/tool_module.py's `fast_lookup` and `fast_lookup_remote`.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.tools import LOCAL_TIMEOUT, tool
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import chat, chat_in_background, create_agent, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM, note_taker

Stub = agent_pb2_grpc.AgentServiceStub


def history(engine: Engine, agent_id: str) -> list[HistoryEvent]:
    async def fetch() -> list[HistoryEvent]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        handle = client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
        return [event async for event in handle.fetch_history_events()]

    return asyncio.run(fetch())


def scheduled(events: list[HistoryEvent]) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def local_activities(events: list[HistoryEvent]) -> list[HistoryEvent]:
    return [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]


def test_a_fast_read_only_tool_runs_in_the_workflows_worker(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="fast_lookup")])
    messages = chat(stub, agent_id, 'call fast_lookup {"key": "abc"}')

    assert finals(messages) == ["Done: abc=3."]
    kinds = [m.WhichOneof("payload") for m in messages]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("final_answer")
    events = history(engine, agent_id)
    assert "tool:fast_lookup" not in scheduled(events)
    assert len(local_activities(events)) == 1
    assert scheduled(events).count("stream_chat") == 2


def test_a_fast_tool_that_fails_here_runs_again_as_an_activity(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="fast_lookup_remote")])
    messages = chat(stub, agent_id, 'call fast_lookup_remote {"key": "abcd"}')

    assert finals(messages) == ["Done: abcd=4."]
    events = history(engine, agent_id)
    assert len(local_activities(events)) == 1  # the attempt here, failed
    assert scheduled(events).count("tool:fast_lookup_remote") == 1
    assert [m.tool_result.output for m in messages if m.HasField("tool_result")] == ["abcd=4"]


def test_a_tool_that_changes_things_cannot_be_fast() -> None:
    def write(path: str) -> str:
        return path

    with pytest.raises(ValueError, match="read_only"):
        tool(fast=True)(write)


def test_cancel_while_a_fast_tool_runs(engine: Engine, stub: Stub, llm: FakeLLM) -> None:
    """The local activity is stopped and the turn ends cancelled; the agent lives on."""
    llm.reply = note_taker
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="fast_but_slow")])
    reader = chat_in_background(stub, agent_id, 'call fast_but_slow {"seconds": 30}')
    deadline = time.monotonic() + 20
    while not [m for m in reader.messages if m.HasField("tool_call")]:
        assert time.monotonic() < deadline and not reader.done.is_set(), reader.messages
        time.sleep(0.02)
    started = time.monotonic()
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, cancel=agent_pb2.Cancel()))
    assert reader.done.wait(20) and reader.status == grpc.StatusCode.OK, reader.error
    assert reader.messages[-1].error.code == "CANCELLED"
    # The cancel waits for the workflow task the local attempt holds: LOCAL_TIMEOUT at most.
    assert time.monotonic() - started < LOCAL_TIMEOUT.total_seconds() + 5
    assert finals(chat(stub, agent_id, "still there?")) == ["Sure."]
    assert len(local_activities(history(engine, agent_id))) == 1


def test_a_fast_tool_that_is_slow_is_left_to_a_regular_activity(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="fast_but_slow")])
    seconds = LOCAL_TIMEOUT.total_seconds() + 1
    messages = chat(stub, agent_id, f'call fast_but_slow {{"seconds": {seconds}}}')
    assert finals(messages) == [f"Done: looked for {seconds} s."]
    events = history(engine, agent_id)
    assert len(local_activities(events)) == 1
    assert scheduled(events).count("tool:fast_but_slow") == 1

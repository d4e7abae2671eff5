"""Autonomous agents through the gateway: created with a goal they work on at once, followed with
Replay, an approval in the middle, a final answer; a run from a Chat stream; a durable sleep across
a SIGKILL of the whole engine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import TEST_TOOLS, Reader, create_agent, eventually, finals
from tests.effect_tools import effects
from tests.engine import Engine
from tests.fake_llm import FakeLLM, Script, ToolUse
from tests.test_tool_use import notices, of_kind, waiting_call


def agent(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> agent_pb2.Agent:
    response: agent_pb2.Agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    return response


def until_status(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, status: str, timeout: float = 30
) -> agent_pb2.Agent:
    deadline = time.monotonic() + timeout
    while (found := agent(stub, agent_id)).status != status:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    return found


def test_an_autonomous_agent_end_to_end(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM, effects_log: Path
) -> None:
    llm.reply = Script(
        ToolUse([("deploy", '{"service": "api"}')], text="Deploying the api. "),
        ToolUse([("finish", '{"answer": "The api is deployed.", "structured": {"ok": true}}')]),
    )
    agent_id = create_agent(
        stub,
        goal="Deploy the api service.",
        tools=[agent_pb2.Tool(name="deploy")],
        config=agent_pb2.AgentConfig(autonomous=True),
    )
    waiting = until_status(stub, agent_id, "waiting")
    assert waiting.run.state == "waiting" and waiting.run.steps == 1
    follow = Reader(
        stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True), timeout=60)
    )
    call = waiting_call(follow)
    stub.ControlAgent(
        agent_pb2.ControlAgentRequest(
            agent_id=agent_id, approval=agent_pb2.Approval(call_id=call.call_id, approved=True)
        )
    )
    assert follow.done.wait(30) and follow.status == grpc.StatusCode.OK
    messages = follow.messages
    assert notices(messages)[0] == "run_started"
    final = messages[-1].final_answer
    assert final.content == "The api is deployed."
    assert MessageToDict(final.structured) == {"ok": True}
    assert effects(agent_id, effects_log) == ["deployed api"]
    done = agent(stub, agent_id)
    assert done.status == "idle" and not done.HasField("run")
    assert done.stats.total_steps == 2 and done.stats.tool_calls == 2


def test_a_replay_opened_as_a_run_starts_sees_the_call_that_waits(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    """The step's events may be sent before the workflow knows a client follows it: the stream
    must still show the waiting call, or the client never approves and the run never ends."""

    def model(messages: list[dict[str, Any]]) -> ToolUse:
        if messages[-1]["role"] == "tool":
            return ToolUse([("finish", '{"answer": "Deployed."}')])
        return ToolUse([("deploy", '{"service": "api"}')])

    llm.reply = model
    for _ in range(12):  # the window is a few milliseconds wide: open it many times
        agent_id = create_agent(
            stub,
            goal="Deploy the api service.",
            tools=[agent_pb2.Tool(name="deploy")],
            config=agent_pb2.AgentConfig(autonomous=True),
        )
        follow = Reader(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=60))
        call = waiting_call(follow, timeout=10)
        stub.ControlAgent(
            agent_pb2.ControlAgentRequest(
                agent_id=agent_id, approval=agent_pb2.Approval(call_id=call.call_id, approved=True)
            )
        )
        assert follow.done.wait(30) and follow.status == grpc.StatusCode.OK
        until_status(stub, agent_id, "idle")


def test_a_run_from_a_chat_stream_and_the_autonomous_filter(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.reply = Script(
        ToolUse([("remember", '{"name": "count", "content": "1"}')]),
        ToolUse([("wait", '{"seconds": 2, "reason": "a breather"}')]),
        ToolUse([("finish", '{"answer": "Counted to one, rested."}')]),
    )
    agent_id = create_agent(stub, goal="Count.")
    run = agent_pb2.ClientMessage(
        agent_id=agent_id, message_id="run-count", run=agent_pb2.Run(instructions="To one.")
    )
    reader = Reader(stub.Chat(iter([run]), timeout=60))
    sleeping = until_status(stub, agent_id, "sleeping")
    assert sleeping.run.run_id == "run-count" and sleeping.run.HasField("sleeping_until")

    def autonomous() -> list[str]:
        listed = stub.ListAgents(agent_pb2.ListAgentsRequest(status_filter="autonomous")).agents
        return [a.agent_id for a in listed]

    # Listing reads Temporal's visibility store, which catches up with a status shortly after.
    eventually(lambda: agent_id in autonomous(), what="the sleeping agent listed as autonomous")
    assert reader.done.wait(30) and reader.status == grpc.StatusCode.OK
    assert finals(reader.messages) == ["Counted to one, rested."]
    assert {m.message_id for m in reader.messages} == {"run-count"}
    assert ["sleeping", "awake"] == [
        n for n in notices(reader.messages) if n in ("sleeping", "awake")
    ]
    # A second run while one works is refused; an autonomous agent needs a goal.
    with pytest.raises(grpc.RpcError) as refused:
        create_agent(stub, goal="", config=agent_pb2.AgentConfig(autonomous=True))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.chaos
def test_a_wait_survives_a_kill_of_the_whole_engine(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = Script(
        ToolUse([("wait", '{"seconds": 12, "reason": "the nightly job"}')]),
        ToolUse([("finish", '{"answer": "The job ran."}')]),
    )
    engine = Engine(tmp_path / "data", llm.url, ENGRAM_TOOLS=TEST_TOOLS).start()
    try:
        stub = engine.stub()
        agent_id = create_agent(
            stub, goal="Check the nightly job.", config=agent_pb2.AgentConfig(autonomous=True)
        )
        asleep = until_status(stub, agent_id, "sleeping")
        due = asleep.run.sleeping_until.ToDatetime().timestamp()
        engine.kill()
        engine.start()
        stub = engine.stub()
        deadline = time.monotonic() + 60
        while agent(stub, agent_id).HasField("run"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        everything = list(
            stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True))
        )
        awake = [m for m in of_kind(everything, "status") if m.status.status == "awake"]
        assert len(awake) == 1
        woke = awake[0].timestamp.ToDatetime().timestamp()
        # On time: not early, and within a few seconds of when it was due.
        assert due - 0.5 <= woke <= due + 8, (due, woke)
        assert finals(everything) == ["The job ran."]
        assert len(of_kind(everything, "tool_call")) == 2
    finally:
        engine.stop()

"""Tool calls across crashes: real processes SIGKILLed around calls and approvals.

A tool's effect is recorded once per idempotency key (tests/effect_tools.py), as a real tool with
an idempotency key would; every attempt is logged too, so a retry is told from a doubled effect.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import Cluster
from tests.conftest import TEST_TOOLS, Reader, create_agent, finals, user_message
from tests.effect_tools import attempts, effects
from tests.engine import Engine
from tests.fake_llm import FakeLLM, note_taker
from tests.test_tool_use import of_kind, waiting_call

pytestmark = pytest.mark.chaos

SLOW_CALL = 'call slow_effect {"label": "migrated", "seconds": 2}'
# When to kill, in seconds after the message is sent: a turn takes about 3.6 s (0.6 s LLM, 2 s of
# tool, 0.6 s LLM, and the workflow between), so the points fall before, during and after the tool
# and during the LLM call after it. CI takes 5; ENGRAM_TOOL_KILL_POINTS=20 takes 20.
KILL_POINTS = int(os.environ.get("ENGRAM_TOOL_KILL_POINTS", "5"))
KILL_DELAYS = [0.2 + 3.4 * i / max(1, KILL_POINTS - 1) for i in range(KILL_POINTS)]


def tool_engine(tmp_path: Path, llm: FakeLLM, effects_log: Path) -> Engine:
    return Engine(
        tmp_path / "data",
        llm.url,
        ENGRAM_TOOLS=TEST_TOOLS,
        ENGRAM_TEST_EFFECTS=str(effects_log),
    ).start()


def finish(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, content: str, message_id: str
) -> list[agent_pb2.ServerMessage]:
    """Resend the message with its id, as a client does after a crash: the same turn comes back,
    once it has ended."""
    deadline = time.monotonic() + 90
    while True:
        try:
            return list(stub.Chat(iter([user_message(agent_id, content, message_id)]), timeout=90))
        except grpc.RpcError as err:  # the engine may still be coming up
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_kills_around_a_tool_call_leave_exactly_one_effect(tmp_path: Path, llm: FakeLLM) -> None:
    """The whole engine (worker, gateway, Temporal) SIGKILLed before, during and after the tool,
    and during the LLM call after it: every turn ends with its answer and one effect."""
    llm.reply = note_taker
    llm.ttft = 0.6  # each LLM call takes 0.6 s; the tool 2 s
    log = tmp_path / "effects.log"
    engine = tool_engine(tmp_path, llm, log)
    try:
        for point, delay in enumerate(KILL_DELAYS):
            stub = engine.stub()
            agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="slow_effect")])
            message_id = f"kill-{point}"
            Reader(stub.Chat(iter([user_message(agent_id, SLOW_CALL, message_id)]), timeout=60))
            time.sleep(delay)
            engine.kill()
            engine.start()
            messages = finish(engine.stub(), agent_id, SLOW_CALL, message_id)
            assert finals(messages) == ["Done: migrated: done."], (delay, messages)
            assert effects(agent_id, log) == ["migrated"], delay
            # Any retry used the same call id: the idempotency key held.
            assert len({a.split()[1] for a in attempts(agent_id, log)}) == 1
            turns = engine.stub().GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
            assert [(t.message_id, t.outcome) for t in turns] == [(message_id, "completed")]
    finally:
        engine.stop()


def test_kills_around_a_fast_tool_call_leave_one_answer(tmp_path: Path, llm: FakeLLM) -> None:
    """The whole engine SIGKILLed before, during and after a fast tool's local activity (which
    runs inside its workflow task, before that task is recorded): the call runs again, with the
    same call id, and the turn ends with one answer, the client shown each message once."""
    llm.reply = note_taker
    llm.ttft = 0.6
    call = 'call fast_read {"label": "config", "seconds": 1}'
    log = tmp_path / "effects.log"
    engine = tool_engine(tmp_path, llm, log)
    try:
        for point, delay in enumerate((0.3, 0.9, 1.5, 2.4)):
            stub = engine.stub()
            agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="fast_read")])
            message_id = f"fast-kill-{point}"
            Reader(stub.Chat(iter([user_message(agent_id, call, message_id)]), timeout=60))
            time.sleep(delay)
            engine.kill()
            engine.start()
            messages = finish(engine.stub(), agent_id, call, message_id)
            assert finals(messages) == ["Done: config: read."], (delay, messages)
            seqs = [m.sequence_id for m in messages]
            assert seqs == sorted(set(seqs)), (delay, messages)
            assert len(of_kind(messages, "tool_result")) == 1, (delay, messages)
            assert len({a.split()[1] for a in attempts(agent_id, log)}) == 1, delay
            turns = engine.stub().GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
            assert [(t.message_id, t.outcome) for t in turns] == [(message_id, "completed")]
    finally:
        engine.stop()


def test_an_approval_survives_a_kill_of_the_whole_engine(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = note_taker
    log = tmp_path / "effects.log"
    engine = tool_engine(tmp_path, llm, log)
    try:
        stub = engine.stub()
        agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="deploy")])
        content = 'call deploy {"service": "api"}'
        reader = Reader(stub.Chat(iter([user_message(agent_id, content, "deploy-1")]), timeout=60))
        call = waiting_call(reader)
        engine.kill()

        engine.start()
        stub = engine.stub()
        agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
        assert [p.call_id for p in agent.pending_calls] == [call.call_id]
        assert agent.status == "waiting"
        stub.ControlAgent(
            agent_pb2.ControlAgentRequest(
                agent_id=agent_id,
                approval=agent_pb2.Approval(call_id=call.call_id, approved=True),
            )
        )
        messages = finish(stub, agent_id, content, "deploy-1")
        assert finals(messages) == ["Done: deployed api: done."]
        assert effects(agent_id, log) == ["deployed api"]
        # The call was made once: one tool_call in the whole transcript.
        everything = list(
            stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True))
        )
        assert len(of_kind(everything, "tool_call")) == 1
        seqs = [m.sequence_id for m in everything]
        assert seqs == list(range(1, len(seqs) + 1))

        # A client tool's result, too, may come after the whole engine died and came back.
        location = agent_pb2.Tool(name="get_location", description="Where the user is.")
        location.parameters_schema.update({"type": "object", "properties": {}})
        asker = create_agent(stub, tools=[location])
        reader = Reader(
            stub.Chat(iter([user_message(asker, "call get_location {}", "where-1")]), timeout=60)
        )
        call = waiting_call(reader, "awaiting_result")
        engine.kill()
        engine.start()
        stub = engine.stub()
        result = agent_pb2.ToolResult(call_id=call.call_id, output="Porto")
        stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=asker, tool_result=result))
        assert finals(finish(stub, asker, "call get_location {}", "where-1")) == ["Done: Porto."]
    finally:
        engine.stop()


def test_approval_through_another_gateway_after_the_first_died(
    tmp_path: Path, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    log = tmp_path / "effects.log"
    cluster = Cluster(tmp_path, llm.url, ENGRAM_TOOLS=TEST_TOOLS, ENGRAM_TEST_EFFECTS=str(log))
    try:
        cluster.start_temporal()
        cluster.start_worker()
        first, first_address = cluster.start_gateway()
        _, second_address = cluster.start_gateway()
        stub = cluster.stub(first_address)
        agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="deploy")])
        reader = Reader(
            stub.Chat(iter([user_message(agent_id, 'call deploy {"service": "api"}')]), timeout=60)
        )
        call = waiting_call(reader)
        seen = reader.messages[-1].sequence_id
        first.kill()

        other = cluster.stub(second_address)
        follow = Reader(
            other.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, from_sequence=seen), timeout=60)
        )
        other.ControlAgent(
            agent_pb2.ControlAgentRequest(
                agent_id=agent_id, approval=agent_pb2.Approval(call_id=call.call_id, approved=True)
            )
        )
        assert follow.done.wait(30) and follow.status == grpc.StatusCode.OK
        assert finals(follow.messages) == ["Done: deployed api: done."]
        assert [m.sequence_id for m in follow.messages] == list(
            range(seen + 1, seen + 1 + len(follow.messages))
        )
        assert effects(agent_id, log) == ["deployed api"]
    finally:
        cluster.stop()

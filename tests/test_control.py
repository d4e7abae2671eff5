"""Pause, resume, cancel, retry, delete, and listing agents."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import (
    chat,
    chat_in_background,
    create_agent,
    eventually,
    finals,
    unique,
    user_message,
)
from tests.fake_llm import FakeLLM


def get(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> agent_pb2.Agent:
    agent: agent_pb2.Agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    return agent


def control(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, **command: object) -> str:
    request = agent_pb2.ControlAgentRequest(agent_id=agent_id, **command)  # type: ignore[arg-type]
    return str(stub.ControlAgent(request).status)


def test_paused_agent_queues_messages_and_answers_on_resume(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    assert control(stub, agent_id, pause=agent_pb2.Pause(reason="lunch")) == "paused"
    assert get(stub, agent_id).status == "paused"
    content = unique("while paused")
    reader = chat_in_background(stub, agent_id, content)
    eventually(lambda: get(stub, agent_id).queued_messages == 1)
    time.sleep(0.5)
    assert not llm.requests_for(content) and not reader.messages
    assert [a.agent_id for a in list_all(stub, "paused")].count(agent_id) == 1

    assert control(stub, agent_id, resume=agent_pb2.Resume()) == "idle"
    assert reader.done.wait(20)
    assert finals(reader.messages) == [f"You said: {content}"]
    assert get(stub, agent_id).status == "idle"


def test_pause_and_resume_from_the_chat_stream(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    content = unique("after resume")
    resumed = threading.Event()

    def messages() -> object:
        yield agent_pb2.ClientMessage(agent_id=agent_id, pause=agent_pb2.Pause())
        yield user_message(agent_id, content)
        time.sleep(0.5)
        assert not llm.requests_for(content)
        resumed.set()
        yield agent_pb2.ClientMessage(agent_id=agent_id, resume=agent_pb2.Resume())

    received = list(stub.Chat(messages(), timeout=30))
    assert resumed.is_set()
    assert finals(received) == [f"You said: {content}"]
    # The pause and resume notices were stored in sequence; the turn follows them.
    stored = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=10))
    assert [m.status.status for m in stored[:2]] == ["paused", "resumed"]
    assert [m.sequence_id for m in received] == [m.sequence_id for m in stored[2:]]


def test_cancel_stops_the_turn_and_keeps_no_partial_reply(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.1
    llm.reply = lambda messages: "partial " * 100 if "slow" in messages[-1]["content"] else "ok"
    agent_id = create_agent(stub)
    disconnects = llm.disconnects
    reader = chat_in_background(stub, agent_id, "slow question")
    eventually(lambda: any(m.HasField("text") for m in reader.messages))
    control(stub, agent_id, cancel=agent_pb2.Cancel())
    assert reader.done.wait(10)
    assert reader.messages[-1].error.code == "CANCELLED"
    assert not finals(reader.messages)
    eventually(lambda: llm.disconnects > disconnects)  # the LLM request itself was cut off

    turn = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns[-1]
    assert turn.outcome == "cancelled" and turn.reply == ""
    follow_up = unique("next")
    assert finals(chat(stub, agent_id, follow_up)) == ["ok"]
    sent = llm.requests_for(follow_up)[-1]["messages"]
    assert not any("partial" in m["content"] for m in sent)
    assert not any(m["content"] == "slow question" for m in sent)


def test_cancel_from_the_chat_stream(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    llm.token_delay = 0.1
    llm.reply = lambda _: "long " * 100
    agent_id = create_agent(stub)

    def messages() -> object:
        yield user_message(agent_id, "to be cancelled")
        time.sleep(0.5)
        yield agent_pb2.ClientMessage(agent_id=agent_id, cancel=agent_pb2.Cancel())

    start = time.monotonic()
    received = list(stub.Chat(messages(), timeout=30))
    assert time.monotonic() - start < 5
    assert received[-1].error.code == "CANCELLED"


def test_retry_runs_the_failed_turn_again(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    content = unique("retry me")
    llm.api_key = "only-the-right-key"
    assert chat(stub, agent_id, content)[-1].HasField("error")
    llm.api_key = None
    control(stub, agent_id, retry=agent_pb2.Retry())
    eventually(
        lambda: (
            [
                t.outcome
                for t in stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
            ]
            == ["failed", "completed"]
        )
    )
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert turns[1].user == content and turns[1].reply == f"You said: {content}"


def test_retry_without_a_failed_turn_is_a_failed_precondition(
    stub: agent_pb2_grpc.AgentServiceStub,
) -> None:
    agent_id = create_agent(stub)
    with pytest.raises(grpc.RpcError) as raised:
        control(stub, agent_id, retry=agent_pb2.Retry())
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_set_agent_status(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    agent_id = create_agent(stub)
    set_status = stub.SetAgentStatus
    assert (
        set_status(agent_pb2.SetAgentStatusRequest(agent_id=agent_id, status="paused")).status
        == "paused"
    )
    assert get(stub, agent_id).status == "paused"
    assert (
        set_status(agent_pb2.SetAgentStatusRequest(agent_id=agent_id, status="active")).status
        == "idle"
    )
    with pytest.raises(grpc.RpcError) as raised:
        set_status(agent_pb2.SetAgentStatusRequest(agent_id=agent_id, status="sleepy"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_delete_ends_the_agent(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    agent_id = create_agent(stub)
    chat(stub, agent_id, "remember me")
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id))
    eventually(lambda: get(stub, agent_id).status == "deleted")
    with pytest.raises(grpc.RpcError) as raised:
        chat(stub, agent_id, "are you there?")
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Deleting again is harmless; the transcript stays readable.
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id))
    assert (
        stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns[0].user
        == "remember me"
    )
    assert agent_id in [a.agent_id for a in list_all(stub, "deleted")]
    assert agent_id not in [a.agent_id for a in list_all(stub, "")]


def test_delete_cancels_the_turn_in_progress(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.1
    llm.reply = lambda _: "never finished " * 50
    agent_id = create_agent(stub)
    reader = chat_in_background(stub, agent_id, "long one")
    eventually(lambda: any(m.HasField("text") for m in reader.messages))
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id))
    assert reader.done.wait(10)
    assert reader.messages[-1].error.code == "CANCELLED"
    eventually(lambda: get(stub, agent_id).status == "deleted")


def test_force_delete_terminates_at_once(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.2
    llm.reply = lambda _: "stuck " * 100
    agent_id = create_agent(stub)
    reader = chat_in_background(stub, agent_id, "long one")
    eventually(lambda: any(m.HasField("text") for m in reader.messages))
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id, force=True))
    assert get(stub, agent_id).status == "deleted"
    assert reader.done.wait(10)
    assert reader.status == grpc.StatusCode.FAILED_PRECONDITION


def list_all(stub: agent_pb2_grpc.AgentServiceStub, status: str) -> list[agent_pb2.Agent]:
    agents: list[agent_pb2.Agent] = []
    token = ""
    while True:
        page = stub.ListAgents(
            agent_pb2.ListAgentsRequest(status_filter=status, page_size=100, page_token=token)
        )
        agents += page.agents
        token = page.next_page_token
        if not token:
            return agents


def test_list_agents_pages_and_filters(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    tag = unique("list")
    ids = [create_agent(stub, goal=f"agent {i}", metadata={"tag": tag}) for i in range(5)]
    control(stub, ids[0], pause=agent_pb2.Pause())

    def listed(status: str) -> list[agent_pb2.Agent]:
        return [a for a in list_all(stub, status) if a.metadata.get("tag") == tag]

    eventually(lambda: len(listed("")) == 5 and len(listed("paused")) == 1)
    assert listed("paused")[0].agent_id == ids[0]
    assert {a.agent_id for a in listed("idle")} == set(ids[1:])
    by_id = {a.agent_id: a for a in listed("")}
    assert by_id[ids[3]].goal == "agent 3" and by_id[ids[3]].model == "fake-model"

    # Pages of two: every agent exactly once, no page larger than asked.
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = stub.ListAgents(agent_pb2.ListAgentsRequest(page_size=2, page_token=token))
        assert len(page.agents) <= 2
        seen += [a.agent_id for a in page.agents]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages >= 3
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)


def test_delete_answers_queued_messages_with_an_error(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    control(stub, agent_id, pause=agent_pb2.Pause())
    reader = chat_in_background(stub, agent_id, unique("never answered"))
    eventually(lambda: get(stub, agent_id).queued_messages == 1)
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id))
    assert reader.done.wait(10)
    assert reader.status == grpc.StatusCode.FAILED_PRECONDITION and not reader.messages
    eventually(lambda: get(stub, agent_id).status == "deleted")

"""Bad input gets a clear status and changes nothing; LLM failures reach the client as errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import SECRET, chat, create_agent, finals, unique, user_message
from tests.engine import Engine, free_port
from tests.fake_llm import FakeLLM

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def status_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        if callable(call):
            result = call()
            if isinstance(result, Iterator):
                list(result)
    return raised.value.code(), raised.value.details() or ""


def test_unknown_and_malformed_agent_ids(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    missing = str(uuid.uuid4())
    code, details = status_of(lambda: stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=missing)))
    assert code == grpc.StatusCode.NOT_FOUND and missing in details
    assert status_of(lambda: chat(stub, missing, "hello"))[0] == grpc.StatusCode.NOT_FOUND
    for bad in ("", "not-an-id", "agent-1; DROP TABLE", "x" * 500):
        code, details = status_of(
            lambda bad=bad: stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=bad))
        )
        assert code == INVALID and "agent_id" in details
        assert status_of(lambda bad=bad: chat(stub, bad, "hello"))[0] == INVALID
        assert (
            status_of(lambda bad=bad: stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=bad)))[
                0
            ]
            == INVALID
        )


def test_bad_chat_input_changes_nothing(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    chat(stub, agent_id, "first")
    before = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id))
    requests_before = len(llm.requests)

    cases = {
        "empty": user_message(agent_id, ""),
        "blank": user_message(agent_id, " \n\t "),
        "oversized": user_message(agent_id, "x" * (64 * 1024 + 1)),
        "bad message id": user_message(agent_id, "hi", message_id="has spaces in it"),
        "no payload": agent_pb2.ClientMessage(agent_id=agent_id),
        "empty edit": agent_pb2.ClientMessage(agent_id=agent_id, edit=agent_pb2.Edit()),
    }
    for name, message in cases.items():
        code, details = status_of(lambda m=message: stub.Chat(iter([m]), timeout=10))
        assert code == INVALID, name
        assert "Traceback" not in details

    assert stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)) == before
    assert len(llm.requests) == requests_before
    assert finals(chat(stub, agent_id, "still here?")) == ["You said: still here?"]


def test_message_at_the_size_limit_is_accepted(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.reply = lambda _: "got it"
    assert finals(chat(stub, create_agent(stub), "y" * (64 * 1024))) == ["got it"]


def test_bad_input_mid_stream_keeps_the_turns_before_it(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    received: list[agent_pb2.ServerMessage] = []
    with pytest.raises(grpc.RpcError) as raised:
        for message in stub.Chat(
            iter([user_message(agent_id, "good"), user_message(agent_id, "")]), timeout=20
        ):
            received.append(message)
    assert raised.value.code() == INVALID
    assert finals(received) == ["You said: good"]


def test_bad_requests_elsewhere(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    create = stub.CreateAgent
    bad_creates = [
        agent_pb2.CreateAgentRequest(goal="g", model=""),
        agent_pb2.CreateAgentRequest(model="m", config=agent_pb2.AgentConfig(temperature=3)),
        agent_pb2.CreateAgentRequest(
            model="m", config=agent_pb2.AgentConfig(max_context_tokens=-1)
        ),
        agent_pb2.CreateAgentRequest(
            model="m", tools=[agent_pb2.Tool(name="a"), agent_pb2.Tool(name="a")]
        ),
        agent_pb2.CreateAgentRequest(model="m", goal="g" * (64 * 1024 + 1)),
    ]
    for request in bad_creates:
        assert status_of(lambda r=request: create(r))[0] == INVALID
    for list_request in (
        agent_pb2.ListAgentsRequest(status_filter="asleep"),
        agent_pb2.ListAgentsRequest(page_size=-1),
        agent_pb2.ListAgentsRequest(page_token="%%%not-a-token"),
    ):
        assert status_of(lambda r=list_request: stub.ListAgents(r))[0] == INVALID
    agent_id = create_agent(stub)
    assert (
        status_of(lambda: stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id)))[0]
        == INVALID
    )
    assert (
        status_of(
            lambda: stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, from_sequence=-1))
        )[0]
        == INVALID
    )


def assert_failed_turn(messages: list[agent_pb2.ServerMessage], code: str, *words: str) -> str:
    last = messages[-1]
    assert last.HasField("error"), messages
    assert last.error.code == code
    for word in words:
        assert word in last.error.message
    assert SECRET not in last.error.message
    assert not finals(messages)
    return str(last.error.message)


def assert_agent_recovers(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, llm: FakeLLM
) -> None:
    follow_up = unique("are you ok")
    assert finals(chat(stub, agent_id, follow_up)) == [f"You said: {follow_up}"]
    sent = llm.requests_for(follow_up)[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]  # the failed turn left nothing behind


def test_wrong_api_key(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM, engine: Engine) -> None:
    llm.api_key = "a-different-key"
    agent_id = create_agent(stub)
    start = time.monotonic()
    messages = chat(stub, agent_id, "hello")
    assert time.monotonic() - start < 5
    assert engine.llm_url is not None
    assert_failed_turn(messages, "LLM_UNAUTHENTICATED", engine.llm_url, "401", "ENGRAM_LLM_API_KEY")
    llm.api_key = None
    assert_agent_recovers(stub, agent_id, llm)


def test_unknown_model(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    llm.models = {"fake-model"}
    agent_id = create_agent(stub, model="llama-9000")
    messages = chat(stub, agent_id, "hello")
    assert_failed_turn(messages, "LLM_NOT_FOUND", "404", "llama-9000")
    turn = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns[-1]
    assert turn.outcome == "failed" and turn.reply == "" and "llama-9000" in turn.error


def test_transient_errors_are_retried(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    content = unique("flaky")
    llm.fail_next(500, times=1)
    llm.fail_next(429, times=1)
    messages = chat(stub, create_agent(stub), content)
    assert finals(messages) == [f"You said: {content}"]
    assert len(llm.requests_for(content)) == 3


def test_persistent_server_errors_end_the_turn(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.fail_next(503, times=100, message="overloaded")
    agent_id = create_agent(stub)
    start = time.monotonic()
    messages = chat(stub, agent_id, "hello")
    assert time.monotonic() - start < 20
    assert_failed_turn(messages, "LLM_HTTP_503", "503", "overloaded")
    llm.failures.clear()
    assert_agent_recovers(stub, agent_id, llm)


def test_unreachable_endpoint(tmp_path: Path, fake_llm: FakeLLM) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    engine = Engine(tmp_path, dead).start()
    try:
        stub = engine.stub()
        agent_id = create_agent(stub)
        start = time.monotonic()
        messages = chat(stub, agent_id, "hello")
        assert time.monotonic() - start < 8
        assert_failed_turn(messages, "LLM_UNREACHABLE", dead, "unreachable")
        assert stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).status == "idle"
    finally:
        engine.stop()

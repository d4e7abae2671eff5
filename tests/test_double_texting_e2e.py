"""Double texting through the gateway: the policy set and checked like any setting, a refusal as
a gRPC status, and a client whose message was taken into the turn in progress getting that turn's
answer."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from engram.client import Engram, EngramError, Final, Status, Text
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import create_agent
from tests.engine import Engine
from tests.fake_llm import FakeLLM


def test_the_policy_is_checked_and_shown(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        create_agent(stub, config=agent_pb2.AgentConfig(double_texting="shout"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "queue, steer, interrupt, reject" in str(refused.value.details())

    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(double_texting="steer"))
    get = agent_pb2.GetAgentRequest(agent_id=agent_id)
    assert stub.GetAgent(get).config.double_texting == "steer"
    for value, code in (("interrupt", grpc.StatusCode.OK), (3, grpc.StatusCode.INVALID_ARGUMENT)):
        patch = Struct()
        patch.update({"double_texting": value})
        edit = agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=agent_pb2.Edit(patch=patch))
        try:
            stub.ControlAgent(edit)
            got = grpc.StatusCode.OK
        except grpc.RpcError as err:
            got = err.code()
            assert "edit.patch.double_texting must be" in str(err.details())
        assert got == code
    assert stub.GetAgent(get).config.double_texting == "interrupt"


def test_reject_and_interrupt_as_a_client_sees_them(engine: Engine, llm: FakeLLM) -> None:
    def reply(messages: list[dict[str, Any]]) -> str:
        said = [m["content"] for m in messages if m["role"] == "user"]
        if "no, a haiku" in said:
            return "An old silent pond."
        return "An essay, " + "and it goes on " * 100

    llm.reply, llm.token_delay = reply, 0.02
    with Engram(engine.address) as engram:
        busy = engram.create_agent(model="fake-model", double_texting="reject")
        first = busy.send("write a long essay")
        events = iter(first)
        assert any(isinstance(e, Text) for e in events)  # the reply is streaming
        with pytest.raises(EngramError) as refused:
            busy.reply("me again")
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "double_texting policy is reject" in refused.value.details
        busy.cancel()

        agent = engram.create_agent(model="fake-model", double_texting="interrupt")
        essay: list[Any] = []
        streaming = threading.Event()

        def follow() -> None:
            for event in agent.send("write a long essay", message_id="essay"):
                essay.append(event)
                streaming.set()

        reader = threading.Thread(target=follow)
        reader.start()
        assert streaming.wait(20)
        # The second message's own turn ends as it is taken in; the client follows the turn that
        # took it in, to its answer.
        with agent.send("no, a haiku", message_id="haiku") as turn:
            seen = list(turn)
        reader.join(30)
        joined = [e for e in seen if isinstance(e, Status) and e.status == "joined"]
        assert [e.message for e in joined] == ["essay"]
        answer = seen[-1]
        assert isinstance(answer, Final) and answer.message_id == "essay"
        assert answer.content == "An old silent pond."
        assert essay[-1] == seen[-1]
        assert "interrupted" in [e.status for e in essay if isinstance(e, Status)]
        # The taken-in message is kept just before the turn that answered it.
        assert [(t.user, t.outcome) for t in agent.history()] == [
            ("no, a haiku", "joined"),
            ("write a long essay", "completed"),
        ]

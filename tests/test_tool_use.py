"""Agents that act: worker tools, client tools and approvals, end to end through the gateway.

The model is the fake LLM's `note_taker`: "call <tool> <json>" makes it call that tool, and after
a tool's result it answers "Done: <result>.". Worker tools come from tests/tool_module.py and
tests/effect_tools.py, loaded by the engine as `--tools` modules. The approval rules themselves
(deny, edit, respond, policies, stop asking, timeouts, cancel) are tested in process, in
tests/test_tool_approvals.py; here, approvals on the wire.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import Reader, chat, chat_in_background, create_agent, finals, user_message
from tests.effect_tools import effects
from tests.fake_llm import FakeLLM, Reasoning, note_taker
from tests.test_control import get


@pytest.fixture
def tool_llm(llm: FakeLLM) -> FakeLLM:
    llm.reply = note_taker
    return llm


def of_kind(messages: list[agent_pb2.ServerMessage], kind: str) -> list[agent_pb2.ServerMessage]:
    return [m for m in messages if m.WhichOneof("payload") == kind]


def notices(messages: list[agent_pb2.ServerMessage]) -> list[str]:
    return [m.status.status for m in of_kind(messages, "status")]


def waiting_call(
    reader: Reader, notice: str = "awaiting_approval", timeout: float = 20
) -> agent_pb2.ToolCall:
    """The tool call the reader's turn is waiting on, once the stream has shown it."""
    deadline = time.monotonic() + timeout
    while notice not in notices(reader.messages):
        assert time.monotonic() < deadline and not reader.done.is_set(), reader.messages
        time.sleep(0.02)
    return of_kind(reader.messages, "tool_call")[-1].tool_call


def approve(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, **fields: object
) -> agent_pb2.ControlAgentResponse:
    request = agent_pb2.ControlAgentRequest(
        agent_id=agent_id,
        approval=agent_pb2.Approval(**fields),  # type: ignore[arg-type]
    )
    response: agent_pb2.ControlAgentResponse = stub.ControlAgent(request)
    return response


def test_a_worker_tool_runs_and_the_model_gets_its_result(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM
) -> None:
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="add")])
    messages = chat(stub, agent_id, 'call add {"a": 2, "b": 40}')

    call, result = of_kind(messages, "tool_call"), of_kind(messages, "tool_result")
    assert [c.tool_call.tool_name for c in call] == ["add"]
    assert json.loads(call[0].tool_call.input_json) == {"a": 2, "b": 40}
    assert result[0].tool_result.call_id == call[0].tool_call.call_id
    assert (result[0].tool_result.output, result[0].tool_result.is_error) == ("42", False)
    assert finals(messages) == ["Done: 42."]
    seqs = [m.sequence_id for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    # The model was offered the tool with its schema, and shown the result.
    second = tool_llm.requests_for('call add {"a": 2, "b": 40}')[-1]
    offered = {t["function"]["name"]: t["function"] for t in second["tools"]}
    assert set(offered) == {"remember", "recall", "add"}
    assert offered["add"]["parameters"]["required"] == ["a", "b"]
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call[0].tool_call.call_id,
        "content": "42",
    }
    agent = get(stub, agent_id)
    assert agent.stats.tool_calls == 1
    assert [(t.name, t.kind) for t in agent.tools] == [("add", "worker")]
    assert MessageToDict(agent.tools[0].parameters_schema)["properties"]["a"]["type"] == "integer"


def test_bad_arguments_reach_the_model_as_an_error(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM
) -> None:
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="add")])
    messages = chat(stub, agent_id, 'call add {"a": "two"}')
    result = of_kind(messages, "tool_result")[0].tool_result
    assert result.is_error and "a" in result.output and "b" in result.output
    assert finals(messages)[0].startswith("Done: ")


def test_tools_are_listed_and_unknown_ones_refused(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    tools = {t.name: t for t in stub.ListTools(agent_pb2.ListToolsRequest()).tools}
    assert {"add", "place_order", "current_time", "deploy", "record_effect"} <= set(tools)
    assert tools["deploy"].requires_confirmation and not tools["add"].requires_confirmation
    assert tools["add"].read_only and tools["add"].kind == "worker"
    order_schema = MessageToDict(tools["place_order"].parameters_schema)
    assert order_schema["properties"]["speed"]["enum"] == ["normal", "express"]
    with pytest.raises(grpc.RpcError) as refused:
        create_agent(stub, tools=[agent_pb2.Tool(name="launch_rockets")])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "launch_rockets" in str(refused.value.details())
    assert "add" in str(refused.value.details())
    with pytest.raises(grpc.RpcError) as refused:
        create_agent(stub, tools=[agent_pb2.Tool(name="add", approval="sometimes")])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_call_waits_for_approval_then_runs_once(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM, effects_log: Path
) -> None:
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="deploy")])
    reader = chat_in_background(stub, agent_id, 'call deploy {"service": "api"}')
    call = waiting_call(reader)
    assert call.tool_name == "deploy"

    agent = get(stub, agent_id)
    assert agent.status == "waiting"
    assert [(p.call_id, p.tool_name, p.waiting_for) for p in agent.pending_calls] == [
        (call.call_id, "deploy", "approval")
    ]
    waiting = stub.ListAgents(agent_pb2.ListAgentsRequest(status_filter="waiting")).agents
    assert agent_id in [a.agent_id for a in waiting]
    time.sleep(0.3)
    assert effects(agent_id, effects_log) == [] and not reader.done.is_set()

    approve(stub, agent_id, call_id=call.call_id, approved=True, decided_by="ops@example.com")
    assert reader.done.wait(20) and reader.status == grpc.StatusCode.OK
    assert finals(reader.messages) == ["Done: deployed api: done."]
    assert effects(agent_id, effects_log) == ["deployed api"]
    approved = [m.status.message for m in of_kind(reader.messages, "status")]
    assert any("approved by ops@example.com" in text for text in approved)

    # The same decision again changes nothing; another one, or an unknown call, is refused.
    approve(stub, agent_id, call_id=call.call_id, approved=True, decided_by="ops@example.com")
    for fields in ({"call_id": call.call_id, "approved": False}, {"call_id": "call_999999"}):
        with pytest.raises(grpc.RpcError) as refused:
            approve(stub, agent_id, **fields)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    agent = get(stub, agent_id)
    assert agent.status == "idle" and not agent.pending_calls
    assert effects(agent_id, effects_log) == ["deployed api"]


def test_cancel_while_a_worker_tool_runs(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM
) -> None:
    """The tool is stopped and the turn ends cancelled; the agent lives on."""
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="slow")])
    reader = chat_in_background(stub, agent_id, 'call slow {"seconds": 30}')
    deadline = time.monotonic() + 20
    while not of_kind(reader.messages, "tool_call"):
        assert time.monotonic() < deadline and not reader.done.is_set(), reader.messages
        time.sleep(0.02)
    started = time.monotonic()
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, cancel=agent_pb2.Cancel()))
    assert reader.done.wait(20) and reader.status == grpc.StatusCode.OK, reader.error
    assert reader.messages[-1].error.code == "CANCELLED"
    assert time.monotonic() - started < 5
    assert finals(chat(stub, agent_id, "still there?")) == ["Sure."]


def location_tool() -> agent_pb2.Tool:
    schema = Struct()
    schema.update({"type": "object", "properties": {"precision": {"type": "string"}}})
    return agent_pb2.Tool(
        name="get_location", description="Where the user is.", parameters_schema=schema
    )


def test_a_client_tool_waits_for_the_clients_result(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM
) -> None:
    agent_id = create_agent(stub, tools=[location_tool()])
    assert get(stub, agent_id).tools[0].kind == "client"
    reader = chat_in_background(stub, agent_id, 'call get_location {"precision": "city"}')
    call = waiting_call(reader, "awaiting_result")
    assert get(stub, agent_id).pending_calls[0].waiting_for == "result"

    # The result comes on another stream, as it would from another process.
    result = agent_pb2.ClientMessage(
        agent_id=agent_id, tool_result=agent_pb2.ToolResult(call_id=call.call_id, output="Lisbon")
    )
    assert list(stub.Chat(iter([result]), timeout=10)) == []
    assert reader.done.wait(20)
    assert finals(reader.messages) == ["Done: Lisbon."]
    # A resend changes nothing; a result for a call that is not waiting is refused.
    assert list(stub.Chat(iter([result]), timeout=10)) == []
    stray = agent_pb2.ControlAgentRequest(
        agent_id=agent_id, tool_result=agent_pb2.ToolResult(call_id="call_1", output="?")
    )
    with pytest.raises(grpc.RpcError) as refused:
        stub.ControlAgent(stray)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_client_tools_error_reaches_the_model(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM
) -> None:
    agent_id = create_agent(stub, tools=[location_tool()])
    reader = chat_in_background(stub, agent_id, "call get_location {}")
    call = waiting_call(reader, "awaiting_result")
    stub.ControlAgent(
        agent_pb2.ControlAgentRequest(
            agent_id=agent_id,
            tool_result=agent_pb2.ToolResult(
                call_id=call.call_id, is_error=True, error_message="GPS is off"
            ),
        )
    )
    assert reader.done.wait(20)
    assert finals(reader.messages) == ["Done: error: GPS is off."]


def test_bad_tool_input_is_refused(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="deploy")])
    cases = [
        agent_pb2.ControlAgentRequest(agent_id=agent_id, approval=agent_pb2.Approval()),
        agent_pb2.ControlAgentRequest(
            agent_id=agent_id,
            approval=agent_pb2.Approval(call_id="c", approved=True, edited_input_json="[1]"),
        ),
        agent_pb2.ControlAgentRequest(
            agent_id=agent_id,
            approval=agent_pb2.Approval(call_id="c", approved=True, edited_input_json="{oops"),
        ),
        agent_pb2.ControlAgentRequest(agent_id=agent_id, tool_result=agent_pb2.ToolResult()),
        agent_pb2.ControlAgentRequest(
            agent_id=agent_id,
            tool_result=agent_pb2.ToolResult(call_id="c", output="x" * 70_000),
        ),
    ]
    for request in cases:
        with pytest.raises(grpc.RpcError) as refused:
            stub.ControlAgent(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    bad_schema = Struct()
    bad_schema.update({"type": "array"})
    for tool in (
        agent_pb2.Tool(name="has space", parameters_schema=Struct()),
        agent_pb2.Tool(name="listy", parameters_schema=bad_schema),
        agent_pb2.Tool(name="deploy", approval_timeout=Duration(seconds=-1)),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            create_agent(stub, tools=[tool])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, tool
    # An approval for an agent that does not exist is NOT_FOUND, as for everything else.
    with pytest.raises(grpc.RpcError) as refused:
        approve(stub, "6f1c1f9e-0000-4000-8000-000000000000", call_id="c", approved=True)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_chat_stream_can_carry_an_approval(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM, effects_log: Path
) -> None:
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="deploy")])
    reader = chat_in_background(stub, agent_id, 'call deploy {"service": "api"}')
    call = waiting_call(reader)
    decision = agent_pb2.ClientMessage(
        agent_id=agent_id, approval=agent_pb2.Approval(call_id=call.call_id, approved=True)
    )
    assert list(stub.Chat(iter([decision, user_message(agent_id, "and then?")]), timeout=30))
    assert reader.done.wait(20)
    assert finals(reader.messages) == ["Done: deployed api: done."]
    assert effects(agent_id, effects_log) == ["deployed api"]


def test_thinking_streams_as_thoughts_kept_out_of_the_reply(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    reasoning = "The user greets me. A short greeting back is right."
    llm.reply = lambda messages: Reasoning(reasoning, f"Hello! ({len(messages)})")
    thinker = create_agent(stub, config=agent_pb2.AgentConfig(enable_thinking=True))
    messages = chat(stub, thinker, "hi there")
    thoughts = of_kind(messages, "thought")
    # (A fast model's thoughts may arrive coalesced, like its text.)
    assert thoughts and "".join(t.thought.content for t in thoughts) == reasoning
    # Thoughts come before the reply's text, and are not part of it.
    assert messages.index(thoughts[-1]) < messages.index(of_kind(messages, "text")[0])
    assert finals(messages) == ["Hello! (2)"]
    second = chat(stub, thinker, "and again")
    assert finals(second) == ["Hello! (4)"]
    sent = llm.requests_for("and again")[-1]["messages"]
    assert reasoning not in json.dumps(sent)
    # Without enable_thinking, reasoning is not streamed.
    plain = create_agent(stub)
    assert not of_kind(chat(stub, plain, "hi"), "thought")


def test_observation_follows_each_tool_result(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM
) -> None:
    agent_id = create_agent(
        stub,
        tools=[agent_pb2.Tool(name="add")],
        config=agent_pb2.AgentConfig(enable_observation=True),
    )
    messages = chat(stub, agent_id, 'call add {"a": 20, "b": 22}')
    kinds = [m.WhichOneof("payload") for m in messages]
    assert kinds[kinds.index("tool_result") + 1] == "observation"
    assert of_kind(messages, "observation")[0].observation.content == "add returned: 42"


def edit(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, patch: dict[str, object]) -> None:
    struct = Struct()
    struct.update(patch)  # type: ignore[arg-type]
    stub.ControlAgent(
        agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=agent_pb2.Edit(patch=struct))
    )


def test_edit_adds_and_removes_tools_and_sets_policies(
    stub: agent_pb2_grpc.AgentServiceStub, tool_llm: FakeLLM, effects_log: Path
) -> None:
    agent_id = create_agent(stub)
    edit(stub, agent_id, {"tools": ["add", "deploy"], "approvals": {"deploy": "never"}})
    assert [t.name for t in get(stub, agent_id).tools] == ["add", "deploy"]
    assert finals(chat(stub, agent_id, 'call deploy {"service": "web"}')) == [
        "Done: error: tool 'deploy' is not allowed for this agent."
    ]
    # deploy's author requires a person to confirm it: no client may switch that off.
    with pytest.raises(grpc.RpcError) as lowered:
        edit(stub, agent_id, {"approvals": {"deploy": "always"}})
    assert lowered.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    edit(stub, agent_id, {"tools": ["add"]})
    gone = chat(stub, agent_id, 'call deploy {"service": "web"}')
    assert "unknown tool 'deploy'" in of_kind(gone, "tool_result")[0].tool_result.output
    assert effects(agent_id, effects_log) == []
    with pytest.raises(grpc.RpcError) as refused:
        edit(stub, agent_id, {"tools": ["launch_rockets"]})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [t.name for t in get(stub, agent_id).tools] == ["add"]

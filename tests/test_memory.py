"""Memory notes: the agent saves, updates and deletes named notes with its `remember` tool; they
are shown to the model at every turn and to clients through GetAgent. Clients change the goal,
instructions, settings and notes with Edit."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.workflows.memory import MAX_NOTE_CHARS
from tests.conftest import chat, create_agent, finals, text_of, unique, without_time
from tests.fake_llm import FakeLLM, ToolUse, note_taker


def notes(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> dict[str, str]:
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    return {n.name: n.content for n in agent.memory}


def test_the_agent_saves_a_note_and_sees_it_at_every_turn(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub)
    seen = chat(stub, agent_id, "remember user_name: Ada Lovelace")

    kinds = [m.WhichOneof("payload") for m in seen]
    assert kinds[:2] == ["user_message", "status"] and kinds[-1] == "final_answer"
    call = next(m.tool_call for m in seen if m.HasField("tool_call"))
    result = next(m.tool_result for m in seen if m.HasField("tool_result"))
    assert call.tool_name == "remember" and call.call_id and result.call_id == call.call_id
    assert json.loads(call.input_json) == {"name": "user_name", "content": "Ada Lovelace"}
    assert result.output == "saved note 'user_name'" and not result.is_error
    # The text before the call, the call, its result, then the answer to it: one turn, in order.
    assert kinds.index("tool_call") < kinds.index("tool_result") < len(kinds) - 2
    assert text_of(seen) == "Let me note that. Done: saved note 'user_name'."
    assert finals(seen) == [text_of(seen)]
    assert [m.sequence_id for m in seen] == list(range(1, len(seen) + 1))

    # The model's second call of the turn carried its own tool call and the result.
    second = llm.requests_for("remember user_name")[-1]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "remember"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call.call_id,
        "content": "saved note 'user_name'",
    }
    assert any(t["function"]["name"] == "remember" for t in second["tools"])

    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    assert [(n.name, n.content) for n in agent.memory] == [("user_name", "Ada Lovelace")]
    assert agent.memory[0].updated_at.seconds > 0
    assert agent.stats.tool_calls == 1 and agent.stats.total_steps == 1

    question = unique("what is my name?")
    chat(stub, agent_id, question)
    system = llm.requests_for(question)[-1]["messages"][0]
    assert system["role"] == "system" and "- user_name: Ada Lovelace" in system["content"]

    # Replay shows the tool use exactly as the client saw it.
    replayed = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=30))
    assert [without_time(m) for m in replayed[: len(seen)]] == [without_time(m) for m in seen]


def test_notes_are_updated_and_deleted(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub)
    chat(stub, agent_id, "remember plan: write the schema")
    chat(stub, agent_id, "remember language: Python")
    chat(stub, agent_id, "remember plan: write the migrations")
    assert notes(stub, agent_id) == {"plan": "write the migrations", "language": "Python"}
    seen = chat(stub, agent_id, 'call remember {"name": "language", "content": ""}')
    assert next(m.tool_result.output for m in seen if m.HasField("tool_result")) == (
        "deleted note 'language'"
    )
    assert notes(stub, agent_id) == {"plan": "write the migrations"}


def test_bad_tool_calls_are_refused_and_the_turn_goes_on(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub)
    for call, error in [
        ("remember {not json", "arguments are not valid JSON"),
        ('remember {"name": "", "content": "x"}', "name must be 1 to 64 characters"),
        (
            'remember {"name": "big", "content": "' + "x" * (MAX_NOTE_CHARS + 1) + '"}',
            f"the limit is {MAX_NOTE_CHARS}",
        ),
        ('search_web {"q": "x"}', "unknown tool 'search_web'"),
    ]:
        seen = chat(stub, agent_id, f"call {call}")
        result = next(m.tool_result for m in seen if m.HasField("tool_result"))
        assert result.is_error and error in result.error_message, result
        assert finals(seen) == [f"Done: {result.output}."]
    assert notes(stub, agent_id) == {}
    assert stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).stats.tool_calls == 4


def test_a_model_that_keeps_calling_tools_must_answer(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.reply = lambda _: ToolUse([("remember", '{"name": "loop", "content": "again"}')], "x ")
    agent_id = create_agent(stub)
    message = unique("loop")
    seen = chat(stub, agent_id, message)
    requests = llm.requests_for(message)
    assert len(requests) == 4  # three rounds of tool use, then a call offering no tools
    assert all(r.get("tools") for r in requests[:3]) and not requests[3].get("tools")
    assert finals(seen) == ["x x x x "]


def test_a_model_that_refuses_tools_still_answers(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.refuse_tools = True
    agent_id = create_agent(stub)
    first, second = unique("hello"), unique("again")
    assert finals(chat(stub, agent_id, first)) == [f"You said: {first}"]
    assert finals(chat(stub, agent_id, second)) == [f"You said: {second}"]
    # Refused once; this agent's requests offer no tools from then on.
    assert [bool(r.get("tools")) for r in llm.requests_for(first)] == [True, False]
    assert [bool(r.get("tools")) for r in llm.requests_for(second)] == [False]


def edit(patch: dict[str, Any], description: str = "") -> agent_pb2.Edit:
    struct = Struct()
    struct.update(patch)
    return agent_pb2.Edit(patch=struct, description=description)


def test_clients_edit_goal_instructions_and_notes(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub, goal="Tune queries.")
    change = edit(
        {
            "goal": "Plan the migration.",
            "system_prompt": "Be terse.",
            "memory": {"db": "Postgres 16"},
        },
        "new project",
    )
    list(stub.Chat(iter([agent_pb2.ClientMessage(agent_id=agent_id, edit=change)])))
    [notice] = stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True))
    assert (notice.status.status, notice.status.message) == ("edited", "new project")

    question = unique("where do we start?")
    chat(stub, agent_id, question)
    system = llm.requests_for(question)[-1]["messages"][0]["content"]
    assert system.startswith("Be terse.\n\nYour goal: Plan the migration.")
    assert "- db: Postgres 16" in system
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    assert (agent.goal, agent.system_prompt) == ("Plan the migration.", "Be terse.")
    assert {n.name: n.content for n in agent.memory} == {"db": "Postgres 16"}
    listed = stub.ListAgents(agent_pb2.ListAgentsRequest(page_size=1000)).agents
    assert next(a.goal for a in listed if a.agent_id == agent_id) == "Plan the migration."

    # ControlAgent takes the same edit without a Chat stream; null deletes a note.
    stub.ControlAgent(
        agent_pb2.ControlAgentRequest(
            agent_id=agent_id, edit=edit({"temperature": 0.5, "memory": {"db": None}})
        )
    )
    question = unique("and now?")
    chat(stub, agent_id, question)
    assert llm.requests_for(question)[-1]["temperature"] == 0.5
    config = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).config
    assert config.temperature == 0.5
    assert notes(stub, agent_id) == {}


def test_bad_edits_change_nothing(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    agent_id = create_agent(stub, goal="Stay.")
    before = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"colour": "blue"}, "edit.patch may set"),
        ({"goal": 7}, "edit.patch.goal must be a string"),
        ({"temperature": 3}, "between 0 and 2"),
        ({"max_context_tokens": 1.5}, "whole number"),
        ({"memory": ["x"]}, "edit.patch.memory must map"),
        # Refused by the agent itself, whole: the goal is not changed either.
        ({"goal": "Go.", "memory": {"big": "x" * (MAX_NOTE_CHARS + 1)}}, "memory note 'big'"),
    ]
    for patch, message in cases:
        with pytest.raises(grpc.RpcError) as failure:
            stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=edit(patch)))
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT, patch
        assert message in str(failure.value.details()), failure.value.details()
    assert stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)) == before

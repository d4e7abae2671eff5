"""Other agents as tools, end to end: an agent delegates to another agent, creates helpers, and
withdraws what it waits on when it is cancelled; references to agents it may not use are refused.

The fake LLM plays every agent: "call <tool> <json>" makes the model call that tool, a tool's
result is answered "Done: <result>.", and anything else is echoed as "You said: <message>".
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.client import Engram
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import (
    chat,
    chat_in_background,
    create_agent,
    eventually,
    finals,
    user_message,
)
from tests.engine import Engine
from tests.fake_llm import FakeLLM, Script, ToolUse
from tests.test_auth import bearer, create_key
from tests.test_example import run_client
from tests.test_readme_tools import examples
from tests.test_tool_use import of_kind

Stub = agent_pb2_grpc.AgentServiceStub


def delegating(messages: list[dict[str, Any]]) -> str | ToolUse:
    last = messages[-1]
    if last["role"] == "tool":
        return f"Done: {last['content']}."
    if last["content"].startswith("call "):
        name, arguments = last["content"].removeprefix("call ").split(" ", 1)
        return ToolUse([(name, arguments)])
    return f"You said: {last['content']}"


@pytest.fixture
def agents_llm(llm: FakeLLM) -> FakeLLM:
    llm.reply = delegating
    return llm


def ask(tool: str, **arguments: str) -> str:
    return f"call {tool} {json.dumps(arguments)}"


def get(stub: Stub, agent_id: str, **call: Any) -> agent_pb2.Agent:
    agent: agent_pb2.Agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id), **call)
    return agent


def turns(stub: Stub, agent_id: str) -> list[agent_pb2.Turn]:
    return list(stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns)


def until(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value.code(), refused.value.details() or ""


def test_an_agent_delegates_a_task_to_another_agent(stub: Stub, agents_llm: FakeLLM) -> None:
    child = create_agent(stub, goal="Know the warehouse inventory.")
    parent = create_agent(stub, goal="Plan orders.", tools=[agent_pb2.Tool(name=f"agent_{child}")])
    messages = chat(stub, parent, ask(f"agent_{child}", task="How many widgets are left?"))

    (call,) = [m.tool_call for m in of_kind(messages, "tool_call")]
    (result,) = [m.tool_result for m in of_kind(messages, "tool_result")]
    assert call.tool_name == f"agent_{child}"
    assert (result.call_id, result.output, result.is_error) == (
        call.call_id,
        "You said: How many widgets are left?",
        False,
    )
    assert finals(messages) == ["Done: You said: How many widgets are left?."]
    # The model was offered the other agent as a function with a task, described by its goal.
    offered = {
        t["function"]["name"]: t["function"]
        for t in agents_llm.requests_for("How many widgets are left?")[0]["tools"]
    }
    assert "Know the warehouse inventory." in offered[f"agent_{child}"]["description"]
    assert offered[f"agent_{child}"]["parameters"]["required"] == ["task"]
    listed = get(stub, parent)
    assert listed.stats.tool_calls == 1
    assert [(t.name, t.kind) for t in listed.tools] == [(f"agent_{child}", "agent")]

    # The sub-task is a turn of the other agent's own: in its transcript and its Replay.
    (turn,) = turns(stub, child)
    assert (turn.user, turn.reply, turn.outcome) == (
        "How many widgets are left?",
        "You said: How many widgets are left?",
        "completed",
    )
    assert turn.message_id == f"{call.call_id.replace('_', '-')}@{parent}"
    replayed = list(
        stub.Replay(agent_pb2.ReplayRequest(agent_id=child, include_history=True), timeout=30)
    )
    assert [m.user_message.content for m in of_kind(replayed, "user_message")] == [turn.user]
    assert finals(replayed) == [turn.reply]
    assert get(stub, child).stats.total_steps == 1

    # Approval policies apply to it as to any tool.
    barred = create_agent(stub, tools=[agent_pb2.Tool(name=f"agent_{child}", approval="never")])
    refused = of_kind(chat(stub, barred, ask(f"agent_{child}", task="Anything?")), "tool_result")
    assert refused[0].tool_result.is_error and "not allowed" in refused[0].tool_result.output
    assert len(turns(stub, child)) == 1


def test_an_agent_creates_helpers_linked_to_it(
    engine: Engine, stub: Stub, agents_llm: FakeLLM
) -> None:
    parent = create_agent(
        stub, goal="Run the shop.", model="shop-model", tools=[agent_pb2.Tool(name="create_helper")]
    )
    messages = chat(
        stub, parent, ask("create_helper", goal="Count widgets.", task="Count the widgets.")
    )
    call = of_kind(messages, "tool_call")[0].tool_call
    assert of_kind(messages, "tool_result")[0].tool_result.output == "You said: Count the widgets."
    assert finals(messages) == ["Done: You said: Count the widgets.."]

    # The helper is a full agent of its own, linked to its parent both ways.
    (helper,) = get(stub, parent).children
    assert helper == str(uuid.uuid5(uuid.UUID(parent), call.call_id))
    made = get(stub, helper)
    assert (made.parent_id, made.goal, made.model) == (parent, "Count widgets.", "shop-model")
    assert [(t.user, t.outcome) for t in turns(stub, helper)] == [
        ("Count the widgets.", "completed")
    ]
    assert "create_helper" in {t.name for t in stub.ListTools(agent_pb2.ListToolsRequest()).tools}

    # A client may create a sub-agent too.
    explicit = stub.CreateAgent(
        agent_pb2.CreateAgentRequest(goal="Audit.", model="shop-model", parent_id=parent)
    )
    assert explicit.agent.parent_id == parent
    assert list(get(stub, parent).children) == [helper, explicit.agent_id]

    def listed_children() -> set[str]:
        listed = stub.ListAgents(agent_pb2.ListAgentsRequest(page_size=1000)).agents
        return {a.agent_id for a in listed if a.parent_id == parent}

    # Listing reads Temporal's visibility store, which catches up with a new agent shortly after.
    eventually(
        lambda: listed_children() == {helper, explicit.agent_id}, what="both children listed"
    )
    with Engram(engine.address) as client:  # the Python client says so too
        assert client.agent(helper).info().parent_id == parent
        assert client.agent(parent).info().children == (helper, explicit.agent_id)

    # Operators see the link in the Web UI: summary, details and a search attribute.
    async def web_ui() -> tuple[str, str, set[str]]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        described = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + helper).describe()
        query = f"EngramParent = '{parent}'"
        children = {e.id async for e in client.list_workflows(query)}
        return (
            await described.static_summary() or "",
            await described.static_details() or "",
            children,
        )

    summary, details, children = asyncio.run(web_ui())
    assert summary == f"Count widgets. · shop-model · sub-agent of {parent[:8]}"
    assert f"**Sub-agent of** `agent-{parent}`" in details
    assert children == {WORKFLOW_ID_PREFIX + helper, WORKFLOW_ID_PREFIX + explicit.agent_id}


def deploy_task() -> str:
    return ask("deploy", service="api")


def test_cancelling_the_parents_turn_cancels_the_childs(stub: Stub, agents_llm: FakeLLM) -> None:
    # The child's turn waits for a person's approval, so the parent waits on it.
    child = create_agent(stub, tools=[agent_pb2.Tool(name="deploy")])
    parent = create_agent(stub, tools=[agent_pb2.Tool(name=f"agent_{child}")])
    reader = chat_in_background(stub, parent, ask(f"agent_{child}", task=deploy_task()))
    until(lambda: get(stub, child).pending_calls)
    assert get(stub, parent).status == "thinking"

    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=parent, cancel=agent_pb2.Cancel()))
    assert reader.done.wait(20), reader.messages
    assert reader.messages[-1].error.code == "CANCELLED"
    (turn,) = turns(stub, child)
    assert turn.outcome == "cancelled"
    idle = get(stub, child)
    assert idle.status == "idle" and not idle.pending_calls


def test_cancelling_a_run_withdraws_the_task_it_waits_on(stub: Stub, llm: FakeLLM) -> None:
    # The child is paused: the task waits in its queue, and is dropped from it.
    child = create_agent(stub)
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=child, pause=agent_pb2.Pause()))
    llm.reply = Script(ToolUse([(f"agent_{child}", json.dumps({"task": "Check stock."}))]))
    parent = create_agent(
        stub,
        goal="Restock.",
        tools=[agent_pb2.Tool(name=f"agent_{child}")],
        config=agent_pb2.AgentConfig(autonomous=True),
    )
    until(lambda: get(stub, child).queued_messages == 1)
    assert get(stub, parent).run.state == "working"

    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=parent, cancel=agent_pb2.Cancel()))
    until(lambda: not get(stub, parent).HasField("run"))
    until(lambda: get(stub, child).queued_messages == 0)
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=child, resume=agent_pb2.Resume()))
    assert turns(stub, child) == []
    assert turns(stub, parent)[-1].outcome == "cancelled"


def test_bad_references_are_refused(stub: Stub, llm: FakeLLM) -> None:
    missing = str(uuid.uuid4())
    code, details = refusal(
        lambda: create_agent(stub, tools=[agent_pb2.Tool(name=f"agent_{missing}")])
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert details == f"tool agent_{missing}: agent {missing} not found"
    code, details = refusal(
        lambda: create_agent(stub, tools=[agent_pb2.Tool(name=f"agent:{missing}")])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "agent_<agent id>" in details
    code, details = refusal(lambda: create_agent(stub, parent_id=missing))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, f"agent {missing} not found")
    code, _ = refusal(lambda: create_agent(stub, parent_id="not-an-id"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    gone = create_agent(stub)
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=gone, force=True))
    code, details = refusal(
        lambda: create_agent(stub, tools=[agent_pb2.Tool(name=f"agent_{gone}")])
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "deleted" in details

    # An agent cannot be given itself: its turn would wait for itself.
    agent_id = create_agent(stub)
    patch = Struct()
    patch.update({"tools": [f"agent_{agent_id}"]})
    code, details = refusal(
        lambda: stub.ControlAgent(
            agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=agent_pb2.Edit(patch=patch))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "its own tool" in details


@dataclass
class Tenants:
    engine: Engine
    keys: dict[str, str]


@pytest.fixture(scope="module")
def tenants(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    data_dir = tmp_path_factory.mktemp("tenants")
    made = {tenant: create_key(data_dir, tenant) for tenant in ("acme", "globex")}
    engine = Engine(data_dir, fake_llm.url).start()
    yield Tenants(engine, made)
    engine.stop()


def test_another_tenants_agents_cannot_be_used(tenants: Tenants, agents_llm: FakeLLM) -> None:
    stub = tenants.engine.stub()
    acme, globex = bearer(tenants.keys["acme"]), bearer(tenants.keys["globex"])

    def create(metadata: Any, **fields: Any) -> str:
        request = agent_pb2.CreateAgentRequest(model="m", **fields)
        return str(stub.CreateAgent(request, metadata=metadata).agent_id)

    theirs = create(globex, goal="Globex's secrets.")
    for fields in ({"tools": [agent_pb2.Tool(name=f"agent_{theirs}")]}, {"parent_id": theirs}):
        code, details = refusal(lambda f=fields: create(acme, **f))  # type: ignore[misc]
        assert code == grpc.StatusCode.NOT_FOUND and f"agent {theirs} not found" in details

    # A helper belongs to its parent's tenant.
    ours = create(acme, tools=[agent_pb2.Tool(name="create_helper")])
    ask_helper = user_message(ours, ask("create_helper", goal="Help.", task="Hello."))
    replies = list(stub.Chat(iter([ask_helper]), metadata=acme, timeout=60))
    assert finals(replies) == ["Done: You said: Hello.."]
    (helper,) = get(stub, ours, metadata=acme).children
    assert get(stub, helper, metadata=acme).parent_id == ours
    code, _ = refusal(lambda: get(stub, helper, metadata=globex))
    assert code == grpc.StatusCode.NOT_FOUND


def test_the_readme_example_as_written(engine: Engine, llm: FakeLLM) -> None:
    [example] = examples("## Agents as tools", "## Terminal")

    def lead_and_others(messages: list[dict[str, Any]]) -> str | ToolUse:
        last = messages[-1]
        if last["role"] == "tool" and "users_email_idx" in last["content"]:
            helper = {"goal": "Write release notes.", "task": "Draft notes for the migration."}
            return ToolUse([("create_helper", json.dumps(helper))])
        if last["role"] == "tool":
            return "Yes: the index is there and the notes are drafted."
        if last["content"] == "Can we ship the users migration?":
            # The request being answered offers the lead's tools: the other agent is one.
            offered = [t["function"]["name"] for t in llm.requests[-1]["tools"]]
            dba = next(name for name in offered if name.startswith("agent_"))
            return ToolUse([(dba, json.dumps({"task": "Is users.email indexed?"}))])
        if last["content"] == "Is users.email indexed?":
            return "Yes, by users_email_idx."
        return "Notes: users get an email index."

    llm.reply = lead_and_others
    out = run_client(sys.executable, example, engine)
    lines = [re.sub(r"agent_[0-9a-f-]{36}", "agent_<id>", line) for line in out.splitlines()]
    assert lines == [
        'Lead calls agent_<id> {"task": "Is users.email indexed?"}',
        "It answers: Yes, by users_email_idx.",
        'Lead calls create_helper {"goal": "Write release notes.", "task": "Draft notes for the '
        'migration."}',
        "It answers: Notes: users get an email index.",
        "Lead: Yes: the index is there and the notes are drafted.",
        "Write release notes.",
    ]

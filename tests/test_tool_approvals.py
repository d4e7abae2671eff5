"""Approvals and tool policies, in process: the real workflow running the engine tests' real worker
tools on a real Temporal dev server, with the LLM scripted (tests/workflow_harness.py).

The model is `note_taker`, as end to end: "call <tool> <json>" makes it call that tool, and after
the tool's result it answers "Done: <result>.". An agent's tools are resolved as CreateAgent
resolves them (engram.gateway.tool_specs), refusals are read as the gateway maps them to gRPC
codes. The wire path, approvals carried by ControlAgent and by a Chat stream and the gateway's own
checks, stays end to end in tests/test_tool_use.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.client import WorkflowUpdateFailedError

from engram.gateway import tool_specs
from engram.gateway.errors import from_temporal
from engram.tools import ToolCatalog
from engram.tools.catalog import agent_tools
from engram.v1 import agent_pb2
from engram.vocabulary import (
    TOOL_ERROR,
    Command,
    ErrorCode,
    EventKind,
    Notice,
    TurnOutcome,
    Waiting,
)
from engram.workflows.types import (
    AgentTool,
    Decision,
    Event,
    LLMRequest,
    LLMResult,
    PendingCall,
    ToolCall,
    TurnResult,
)
from tests.effect_tools import effects
from tests.workflow_harness import Agent, Harness, eventually, within


def note_taker(request: LLMRequest) -> str | LLMResult:
    """tests/fake_llm.py's note_taker, for the harness: calls the tool the user names, then
    reports the tool's result."""
    if request.tool_rounds:
        return f"Done: {request.tool_rounds[-1].results[-1]}."
    content = request.messages[-1].content
    if content.startswith("call "):
        name, arguments = content.removeprefix("call ").split(" ", 1)
        call = ToolCall(call_id="call_0", name=name, arguments=arguments)
        return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=[], tool_calls=[call])
    return "Sure."


@pytest.fixture
def tool_harness(harness: Harness) -> Harness:
    harness.fake.reply = note_taker
    return harness


@pytest.fixture
def effects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the worker tools, running in this process, record their effects."""
    path = tmp_path / "effects.log"
    monkeypatch.setenv("ENGRAM_TEST_EFFECTS", str(path))
    return path


def tools(harness: Harness, *requested: agent_pb2.Tool) -> list[AgentTool]:
    """The agent's tools as CreateAgent makes them from what a client asks for."""
    catalog = agent_tools(ToolCatalog(tools=harness.tools.registry.describe()))
    return tool_specs.resolve(requested, catalog)


def of_kind(result: TurnResult, kind: str) -> list[Event]:
    return [e for e in result.events if e.kind == kind]


def finals(result: TurnResult) -> list[str]:
    return [e.text for e in of_kind(result, EventKind.FINAL_ANSWER)]


def notices(result: TurnResult) -> list[str]:
    return [e.code for e in of_kind(result, EventKind.STATUS)]


async def waiting_call(agent: Agent) -> PendingCall:
    """The tool call the agent's turn is waiting on a person for, once it waits."""

    async def pending() -> list[PendingCall]:
        info = await agent.describe()
        return [p for p in info.pending if p.waiting_for == Waiting.APPROVAL]

    async def waiting() -> bool:
        return bool(await pending())

    await eventually(waiting, "a call to wait for approval")
    return (await pending())[-1]


async def test_deny_edit_and_respond(tool_harness: Harness, effects_file: Path) -> None:
    agent = await tool_harness.create_agent(
        tools=tools(tool_harness, agent_pb2.Tool(name="deploy"))
    )

    turn = await agent.send('call deploy {"service": "api"}', "m1")
    call = await waiting_call(agent)
    await agent.decide(Decision(call_id=call.call_id, approved=False, reason="not on a Friday"))
    result = await within(turn.result())
    assert finals(result) == ["Done: error: denied by the user: not on a Friday."]
    assert of_kind(result, EventKind.TOOL_RESULT)[0].code == TOOL_ERROR
    assert Notice.DENIED in notices(result)

    turn = await agent.send('call deploy {"service": "api"}', "m2")
    call = await waiting_call(agent)
    edited = json.dumps({"service": "web"})
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await agent.decide(Decision(call_id=call.call_id, approved=True, edited_arguments="{oops"))
    assert from_temporal(refused.value, agent.agent_id).code == grpc.StatusCode.INVALID_ARGUMENT
    await agent.decide(Decision(call_id=call.call_id, approved=True, edited_arguments=edited))
    result = await within(turn.result())
    assert finals(result) == ["Done: deployed web: done."]
    # The transcript shows both: what the model asked for and what ran.
    assert json.loads(of_kind(result, EventKind.TOOL_CALL)[0].text) == {"service": "api"}
    assert any(edited in e.text for e in of_kind(result, EventKind.STATUS))

    turn = await agent.send('call deploy {"service": "db"}', "m3")
    call = await waiting_call(agent)
    await agent.decide(
        Decision(call_id=call.call_id, approved=False, response="Already deployed this morning.")
    )
    result = await within(turn.result())
    assert finals(result) == ["Done: Already deployed this morning.."]
    assert effects(agent.agent_id, effects_file) == ["deployed web"]


async def test_policies_and_stop_asking(tool_harness: Harness, effects_file: Path) -> None:
    harness = tool_harness
    never = await harness.create_agent(
        tools=tools(harness, agent_pb2.Tool(name="deploy", approval="never"))
    )
    assert finals(await never.ask('call deploy {"service": "x"}')) == [
        "Done: error: tool 'deploy' is not allowed for this agent."
    ]
    # deploy's author requires a confirmation: a client may not lower it
    # (tests/test_mandatory_approvals.py); one it asked for itself it may.
    always = await harness.create_agent(
        tools=tools(
            harness,
            agent_pb2.Tool(name="record_effect", requires_confirmation=True, approval="always"),
        )
    )
    assert finals(await always.ask('call record_effect {"label": "y"}')) == ["Done: y: done."]
    assert effects(never.agent_id, effects_file) == []
    assert effects(always.agent_id, effects_file) == ["y"]

    # A read-only tool marked as needing confirmation runs at once when the agent allows it.
    trusting = await harness.create_agent(
        tools=tools(harness, agent_pb2.Tool(name="add", requires_confirmation=True)),
        auto_approve_read_only=True,
    )
    assert finals(await trusting.ask('call add {"a": 1, "b": 1}')) == ["Done: 2."]

    asking = await harness.create_agent(
        tools=tools(harness, agent_pb2.Tool(name="record_effect", requires_confirmation=True))
    )
    turn = await asking.send('call record_effect {"label": "one"}', "m1")
    call = await waiting_call(asking)
    await asking.decide(Decision(call_id=call.call_id, approved=True, stop_asking=True))
    await within(turn.result())
    assert finals(await asking.ask('call record_effect {"label": "two"}', "m2")) == [
        "Done: two: done."
    ]
    assert effects(asking.agent_id, effects_file) == ["one", "two"]


async def test_an_approval_that_times_out_is_denied(
    tool_harness: Harness, effects_file: Path
) -> None:
    agent = await tool_harness.create_agent(
        tools=tools(
            tool_harness, agent_pb2.Tool(name="deploy", approval_timeout=Duration(seconds=1))
        )
    )
    started = time.monotonic()
    result = await agent.ask('call deploy {"service": "api"}')
    assert time.monotonic() - started >= 1
    assert finals(result) == ["Done: error: denied: timed out waiting for approval."]
    assert effects(agent.agent_id, effects_file) == []


async def test_cancel_while_waiting_for_approval(tool_harness: Harness, effects_file: Path) -> None:
    agent = await tool_harness.create_agent(
        tools=tools(tool_harness, agent_pb2.Tool(name="deploy"))
    )
    turn = await agent.send('call deploy {"service": "api"}', "m1")
    call = await waiting_call(agent)
    await agent.control(Command.CANCEL)
    result = await within(turn.result())
    assert result.events[-1].kind == EventKind.ERROR
    assert result.events[-1].code == ErrorCode.CANCELLED
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await agent.decide(Decision(call_id=call.call_id, approved=True))
    assert from_temporal(refused.value, agent.agent_id).code == grpc.StatusCode.FAILED_PRECONDITION
    assert not (await agent.describe()).pending
    assert finals(await agent.ask("still there?", "m2")) == ["Sure."]
    assert effects(agent.agent_id, effects_file) == []

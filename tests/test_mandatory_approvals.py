"""A confirmation a tool's author or operator requires cannot be lowered by a client.

`deploy` (tests/effect_tools.py) is `@tool(requires_confirmation=True)`: its author requires a
person to confirm each call. The gateway refuses `always` for it at creation and in an Edit; the
agent's workflow refuses such an Edit too, and a call of it asks a person whatever the agent's
policies say (`always` given by a client that went around the gateway, `stop_asking`,
`auto_approve_read_only`). A client's own `requires_confirmation` stays the client's to lower.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from temporalio.client import WorkflowUpdateFailedError

from engram.activities.tool_calls import ToolActivities
from engram.auth.principal import OPEN, Principal, set_current
from engram.auth.records import Role
from engram.gateway import tool_specs
from engram.gateway.errors import GatewayError, from_temporal
from engram.tools import ToolCatalog, ToolRegistry
from engram.tools.builtin import current_time
from engram.tools.catalog import agent_tools
from engram.v1 import agent_pb2
from engram.workflows import edits
from engram.workflows.types import AgentSpec, AgentState, AgentTool, Decision, EditInput
from tests.effect_tools import deploy, record_effect
from tests.effect_tools import effects as effects_of
from tests.test_tool_approvals import finals, note_taker, waiting_call
from tests.workflow_harness import Harness, within


def catalog() -> list[AgentTool]:
    """The workers' catalog as the gateway reads it."""
    return agent_tools(ToolCatalog(tools=ToolRegistry([deploy, record_effect]).describe()))


def resolve(*requested: agent_pb2.Tool) -> list[AgentTool]:
    return tool_specs.resolve(requested, catalog())


def refused(call: object) -> GatewayError:
    assert isinstance(call, GatewayError)
    assert call.code == grpc.StatusCode.INVALID_ARGUMENT
    return call


# --- the gateway ------------------------------------------------------------------------------


def test_creating_an_agent_with_always_for_an_operators_confirmation_is_refused() -> None:
    with pytest.raises(GatewayError) as err:
        resolve(agent_pb2.Tool(name="deploy", approval="always"))
    assert refused(err.value).message.startswith("tool deploy: approval cannot be 'always'")
    # Stricter is fine, and so is the default.
    for policy in ("never", "ask", ""):
        (tool,) = resolve(agent_pb2.Tool(name="deploy", approval=policy))
        assert tool.confirmation_mandatory and tool.approval == policy


def test_a_clients_own_confirmation_stays_its_own_to_lower() -> None:
    (tool,) = resolve(
        agent_pb2.Tool(name="record_effect", requires_confirmation=True, approval="always")
    )
    assert tool.requires_confirmation and not tool.confirmation_mandatory
    (client,) = resolve(
        agent_pb2.Tool(
            name="ask_me",
            requires_confirmation=True,
            approval="always",
            parameters_schema={"type": "object"},
        )
    )
    assert not client.confirmation_mandatory


def test_an_edit_may_not_lower_an_operators_confirmation() -> None:
    offered = tool_specs.as_offered(catalog())
    with pytest.raises(GatewayError) as err:
        tool_specs.check_approvals({"deploy": "always"}, offered)
    assert "deploy" in refused(err.value).message
    tool_specs.check_approvals({"deploy": "never", "record_effect": "always"}, offered)


def test_the_workflow_refuses_such_an_edit_too() -> None:
    (mandatory,) = resolve(agent_pb2.Tool(name="deploy"))
    spec = AgentSpec(agent_id="a", goal="", model="m")
    state = AgentState(spec=spec, created_at=0.0, tools=[mandatory])
    with pytest.raises(ValueError, match="cannot be 'always'"):
        edits.check(state, EditInput(approvals={"deploy": "always"}))
    with pytest.raises(ValueError, match="cannot be 'always'"):
        edits.check(state, EditInput(tools=[replace(mandatory, approval="always")]))
    edits.check(state, EditInput(approvals={"deploy": "never"}))
    # A new set of tools without it: the policy no longer names one of the agent's tools.
    edits.check(state, EditInput(tools=[], approvals={"deploy": "always"}))


async def test_an_operator_policy_makes_a_workers_tool_ask() -> None:
    tools = ToolActivities(ToolRegistry([record_effect, current_time]))
    tools.require_confirmation = ("record_*",)
    catalog = agent_tools(await tools.list_tools())
    assert {t.name: t.requires_confirmation for t in catalog} == {
        "current_time": False,
        "record_effect": True,
    }
    with pytest.raises(GatewayError) as err:
        tool_specs.resolve([agent_pb2.Tool(name="record_effect", approval="always")], catalog)
    refused(err.value)


def test_decided_by_is_who_the_gateway_knows() -> None:
    approval = agent_pb2.Approval(call_id="call_3", approved=True, decided_by="the CEO")
    set_current(Principal(tenant="acme", role=Role.MEMBER, key_id="k_123"))
    try:
        assert tool_specs.decision(approval).decided_by == "key k_123 (tenant acme)"
        missing = agent_pb2.Approval(call_id="call_3", approved=True)
        assert tool_specs.decision(missing).decided_by == "key k_123 (tenant acme)"
    finally:
        set_current(OPEN)
    # Without keys nobody is anybody: the client's words are all there is.
    assert tool_specs.decision(approval).decided_by == "the CEO"


# --- the workflow -----------------------------------------------------------------------------


@pytest.fixture
def tool_harness(harness: Harness) -> Harness:
    harness.fake.reply = note_taker
    return harness


@pytest.fixture
def effects_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "effects.log"
    monkeypatch.setenv("ENGRAM_TEST_EFFECTS", str(path))
    return path


async def test_a_mandatory_confirmation_asks_whatever_the_agent_says(
    tool_harness: Harness, effects_file: Path
) -> None:
    (asking,) = resolve(agent_pb2.Tool(name="deploy"))
    # `always` as a client that went around the gateway would set it, and read-only trust.
    agent = await tool_harness.create_agent(
        tools=[replace(asking, approval="always", read_only=True)], auto_approve_read_only=True
    )
    turn = await agent.send('call deploy {"service": "one"}', "m1")
    call = await waiting_call(agent)
    await agent.decide(
        Decision(call_id=call.call_id, approved=True, stop_asking=True, decided_by="k")
    )
    assert finals(await within(turn.result())) == ["Done: deployed one: done."]
    # stop_asking did not apply: the next call asks again.
    turn = await agent.send('call deploy {"service": "two"}', "m2")
    call = await waiting_call(agent)
    assert call.arguments == '{"service": "two"}'
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await agent.edit(EditInput(approvals={"deploy": "always"}))
    assert from_temporal(err.value, agent.agent_id).code == grpc.StatusCode.INVALID_ARGUMENT
    await agent.decide(Decision(call_id=call.call_id, approved=False, reason="no"))
    await within(turn.result())
    assert effects_of(agent.agent_id, effects_file) == ["deployed one"]

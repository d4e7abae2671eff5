"""An agent whose workflow task fails on every retry is shown as such, not as an error: GetAgent
answers `needs_attention` with Temporal's reason, ListAgents still lists it, and it can be
deleted."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
from temporalio.client import Client

from engram import TASK_QUEUE, WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import AgentStatus
from tests.conftest import eventually
from tests.engine import Engine


async def start_wedged_agent(engine: Engine) -> str:
    """An AgentWorkflow whose input no worker can decode: its first workflow task fails, and
    fails again on every retry, as a wedged agent's do."""
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    agent_id = str(uuid.uuid4())
    await client.start_workflow(
        "AgentWorkflow",
        {"spec": "not a spec"},
        id=WORKFLOW_ID_PREFIX + agent_id,
        task_queue=TASK_QUEUE,
        memo={"goal": "Wedged.", "model": "m", "created_at": time.time(), "metadata": {}},
    )
    return agent_id


def test_a_wedged_agent_is_shown_as_needing_attention_and_can_be_deleted(
    engine: Engine, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    agent_id = asyncio.run(start_wedged_agent(engine))
    request = agent_pb2.GetAgentRequest(agent_id=agent_id)
    deadline = time.monotonic() + 30
    while (agent := stub.GetAgent(request, timeout=20)).status != AgentStatus.NEEDS_ATTENTION:
        assert time.monotonic() < deadline, agent
        time.sleep(0.2)
    assert agent.goal == "Wedged." and agent.agent_id == agent_id
    assert "Failed decoding arguments" in agent.attention, agent.attention
    assert "workflow task failed" in agent.attention

    # ListAgents reads Temporal's visibility store, where Temporal flags the failing task.
    def listed() -> agent_pb2.Agent | None:
        agents = stub.ListAgents(agent_pb2.ListAgentsRequest(page_size=1000)).agents
        return next((a for a in agents if a.agent_id == agent_id), None)

    eventually(
        lambda: (found := listed()) is not None and found.status == AgentStatus.NEEDS_ATTENTION,
        timeout=30,
        what="ListAgents to show the agent needing attention",
    )
    shown = listed()
    assert shown is not None and "WorkflowTaskFailed" in shown.attention, shown
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id, force=True))
    assert stub.GetAgent(request).status == AgentStatus.DELETED


def test_a_healthy_agent_has_no_attention(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    created = stub.CreateAgent(agent_pb2.CreateAgentRequest(goal="Fine.", model="m"))
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=created.agent_id))
    assert (agent.status, agent.attention) == (AgentStatus.IDLE, "")
    try:
        stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=str(uuid.uuid4())))
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
    else:
        raise AssertionError("an unknown agent was found")

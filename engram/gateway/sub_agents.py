"""Other agents at the API edge: agents a client gives an agent as tools, and the parent it
creates a sub-agent for.

Either must be an agent the caller's tenant owns (else NOT_FOUND, exactly as for an agent that
does not exist) and not deleted (FAILED_PRECONDITION). `create_helper` needs no check: the
helpers it makes belong to the agent's own tenant.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus

from engram import WORKFLOW_ID_PREFIX
from engram.gateway import validation
from engram.gateway.errors import GatewayError, from_temporal, invalid
from engram.gateway.tenancy import AgentAccess
from engram.tools.agents import agent_tool, helper_tool, referenced_agent
from engram.v1 import agent_pb2
from engram.vocabulary import ToolName
from engram.workflows.types import AgentTool


async def agent_tools(
    requested: Sequence[agent_pb2.Tool], client: Client, access: AgentAccess, own_id: str = ""
) -> list[AgentTool]:
    """The agents (and `create_helper`) among the requested tools, checked, as the model will be
    offered them; `own_id` is the agent being given them (it cannot be its own tool)."""
    found: list[AgentTool] = []
    for wanted in requested:
        if wanted.name == ToolName.CREATE_HELPER:
            found.append(helper_tool())
            continue
        if wanted.name.startswith("agent:"):
            raise invalid(
                f"tool {wanted.name[:80]!r}: name another agent as agent_<agent id> (model "
                "function names cannot hold ':')"
            )
        agent_id = referenced_agent(wanted.name)
        if agent_id is None:
            continue
        if agent_id == own_id:
            raise invalid(f"tool {wanted.name}: an agent cannot be its own tool")
        try:
            description = await live_agent(client, access, agent_id)
        except GatewayError as err:
            raise GatewayError(err.code, f"tool {wanted.name}: {err.message}") from None
        goal = str((await description.memo()).get("goal", ""))
        found.append(agent_tool(agent_id, goal))
    return found


async def live_agent(
    client: Client, access: AgentAccess, agent_id: str
) -> WorkflowExecutionDescription:
    """The agent's workflow, if the caller may act on it and it is not deleted."""
    agent_id = validation.agent_id(agent_id)
    try:
        description = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).describe()
        await access.check(agent_id)
    except Exception as err:
        raise from_temporal(err, agent_id) from err
    if description.status != WorkflowExecutionStatus.RUNNING:
        deleted = f"agent {agent_id} has been deleted"
        raise GatewayError(grpc.StatusCode.FAILED_PRECONDITION, deleted)
    return description

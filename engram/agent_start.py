"""Starting an agent: its workflow, with what ListAgents and the Web UI show of it.

Every agent starts here, whoever makes it: a client's CreateAgent (engram/gateway) and an agent
that creates a helper for a sub-task (engram/activities/delegation.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes

from engram import TASK_QUEUE, WORKFLOW_ID_PREFIX
from engram.gateway import web_ui
from engram.vocabulary import (
    MODEL_ATTRIBUTE,
    PARENT_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    TENANT_ATTRIBUTE,
    AgentStatus,
    Signal,
)
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import (
    AgentInfo,
    AgentSpec,
    AgentState,
    AgentTool,
    PendingMessage,
    SubAgentInput,
)


@dataclass(kw_only=True)
class NewAgent:
    spec: AgentSpec
    tools: list[AgentTool] = field(default_factory=list)
    # The tenant it belongs to ("" with auth off).
    tenant: str = ""
    auto_approve_read_only: bool = False
    # Start working on the goal at once (an autonomous run), without a user message.
    autonomous: bool = False
    # Continue-as-new past this many history events.
    max_history_events: int = 10_000


async def start_agent(client: Client, new: NewAgent) -> AgentInfo:
    """Start the agent's workflow (and link a sub-agent to its parent); the agent as GetAgent
    shows it now. Raises temporalio's WorkflowAlreadyStartedError if its id is taken."""
    spec = new.spec
    now = time.time()
    attributes = [
        SearchAttributePair(STATUS_ATTRIBUTE, AgentStatus.IDLE),
        SearchAttributePair(MODEL_ATTRIBUTE, spec.model),
    ]
    if new.tenant:
        attributes.append(SearchAttributePair(TENANT_ATTRIBUTE, new.tenant))
    if spec.parent_id:
        attributes.append(SearchAttributePair(PARENT_ATTRIBUTE, spec.parent_id))
    await client.start_workflow(
        AgentWorkflow.run,
        AgentState(
            spec=spec,
            created_at=now,
            updated_at=now,
            max_history_events=new.max_history_events,
            tools=new.tools,
            auto_approve_read_only=new.auto_approve_read_only,
            queue=[PendingMessage(f"run-{uuid.uuid4()}", "", starts_run=True)]
            if new.autonomous
            else [],
        ),
        id=WORKFLOW_ID_PREFIX + spec.agent_id,
        task_queue=TASK_QUEUE,
        memo={
            "goal": spec.goal,
            "model": spec.model,
            "created_at": now,
            "metadata": spec.metadata,
            "tenant": new.tenant,
        },
        search_attributes=TypedSearchAttributes(attributes),
        # What the Web UI shows for the agent: its goal and model, then how it was made.
        static_summary=web_ui.summary(spec),
        static_details=web_ui.details(spec, new.tools, new.tenant),
        request_eager_start=True,
        # Its workflow and activity tasks take turns with other tenants' (task queue fairness).
        priority=Priority(fairness_key=new.tenant) if new.tenant else Priority.default,
    )
    if spec.parent_id:
        await link_to_parent(client, spec)
    return AgentInfo(
        spec=spec,
        status=AgentStatus.IDLE,
        created_at=now,
        updated_at=now,
        completed_turns=0,
        tokens_used=0,
        busy_seconds=0.0,
        queued_messages=0,
        last_seq=0,
        tools=new.tools,
    )


async def link_to_parent(client: Client, spec: AgentSpec) -> None:
    """List the sub-agent among its parent's children (again is harmless)."""
    parent = client.get_workflow_handle(WORKFLOW_ID_PREFIX + spec.parent_id)
    await parent.signal(Signal.ADD_SUB_AGENT, SubAgentInput(agent_id=spec.agent_id))

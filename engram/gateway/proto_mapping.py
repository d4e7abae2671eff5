"""The API's messages and the workflow's types, each way: requests into the dataclasses the
workflow takes, and what agents report into the messages clients read.

Checks on input are engram.gateway.validation's and tools are engram.gateway.tool_specs'; this
module only converts.
"""

from __future__ import annotations

import base64
import binascii
import uuid

from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus

from engram import WORKFLOW_ID_PREFIX
from engram.agent_start import NewAgent
from engram.gateway import tool_specs, validation
from engram.gateway.agent_config import agent_settings
from engram.gateway.errors import invalid
from engram.gateway.turn_stream import Messages
from engram.messages import timestamp, to_server_message
from engram.v1 import agent_pb2
from engram.vocabulary import PARENT_ATTRIBUTE, REPORTED_PROBLEMS, STATUS_ATTRIBUTE, AgentStatus
from engram.workflows.types import AgentInfo, AgentSpec, AgentTool, Event, RunInput, RunState, Turn

# --- requests -----------------------------------------------------------------------------------


def new_agent(
    request: agent_pb2.CreateAgentRequest,
    *,
    agent_id: str,
    model: str,
    parent_id: str,
    tools: list[AgentTool],
    tenant: str,
    max_history_events: int,
) -> NewAgent:
    """A checked CreateAgentRequest as the agent to start."""
    spec = AgentSpec(
        agent_id=agent_id,
        goal=request.goal,
        model=model,
        system_prompt=request.system_prompt,
        metadata=dict(request.metadata),
        tools=[MessageToDict(tool) for tool in request.tools],
        config=MessageToDict(request.config),
        parent_id=parent_id,
        settings=agent_settings(request.config),
    )
    return NewAgent(
        spec=spec,
        tools=tools,
        tenant=tenant,
        auto_approve_read_only=request.config.auto_approve_read_only,
        autonomous=request.config.autonomous,
        max_history_events=max_history_events,
    )


def run_input(run: agent_pb2.Run, message_id: str = "", reply_to: str = "") -> RunInput:
    """A Run command; its id is the message's (a Chat stream's), else a new one."""
    return RunInput(
        run_id=validation.message_id(message_id or f"run-{uuid.uuid4()}"),
        instructions=run.instructions,
        reply_to=reply_to,
    )


def page_token(token: str) -> bytes | None:
    """A listing's page token, as the client was given it by `next_page_token`."""
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        raise invalid("page_token is not a token this service issued") from None


def next_page_token(token: bytes | None) -> str:
    return base64.urlsafe_b64encode(token).decode() if token else ""


# --- replies ------------------------------------------------------------------------------------


def messages(agent_id: str, events: list[Event]) -> Messages:
    return [to_server_message(agent_id, e) for e in events]


def turn_message(turn: Turn) -> agent_pb2.Turn:
    return agent_pb2.Turn(
        message_id=turn.message_id,
        user=turn.user,
        reply=turn.reply,
        outcome=turn.outcome,
        error=turn.error,
        first_sequence_id=turn.first_seq,
        last_sequence_id=turn.last_seq,
        started_at=timestamp(turn.started_at),
        ended_at=timestamp(turn.ended_at) if turn.ended_at else None,
    )


def agent_message(info: AgentInfo) -> agent_pb2.Agent:
    spec = info.spec
    duration = Duration()
    duration.FromNanoseconds(round(info.busy_seconds * 1e9))
    return agent_pb2.Agent(
        agent_id=spec.agent_id,
        goal=spec.goal,
        status=info.status,
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        metadata=spec.metadata,
        stats=agent_pb2.AgentStats(
            total_steps=info.steps,
            tool_calls=info.tool_calls,
            total_duration=duration,
            tokens_used=info.tokens_used,
            cost_usd=info.cost_usd,
        ),
        model=spec.model,
        system_prompt=spec.system_prompt,
        tools=[tool_specs.to_proto(t) for t in info.tools]
        or [ParseDict(t, agent_pb2.Tool()) for t in spec.tools],
        config=ParseDict(spec.config, agent_pb2.AgentConfig()),
        queued_messages=info.queued_messages,
        last_sequence_id=info.last_seq,
        memory=[
            agent_pb2.MemoryNote(name=n.name, content=n.content, updated_at=timestamp(n.updated_at))
            for n in info.notes
        ],
        pending_calls=[
            agent_pb2.PendingToolCall(
                call_id=p.call_id,
                tool_name=p.tool,
                input_json=p.arguments,
                waiting_for=p.waiting_for,
                since=timestamp(p.since),
                deadline=timestamp(p.deadline) if p.deadline else None,
                message_id=p.message_id,
            )
            for p in info.pending
        ],
        run=run_info(info.run, info.status) if info.run is not None else None,
        parent_id=spec.parent_id,
        children=info.children,
        forked_from=spec.forked_from,
        fork_sequence=spec.fork_sequence,
    )


def run_info(run: RunState, status: str) -> agent_pb2.RunInfo:
    state = "waiting_for_user" if run.waiting_for_user else status
    return agent_pb2.RunInfo(
        run_id=run.run_id,
        state=state,
        steps=run.steps,
        tokens=run.tokens,
        cost_usd=run.cost_usd,
        started_at=timestamp(run.started_at),
        sleeping_until=timestamp(run.sleeping_until) if run.sleeping_until else None,
    )


async def listed_agent(execution: WorkflowExecution) -> agent_pb2.Agent:
    """An agent as ListAgents shows it: from its memo and search attributes, no query."""
    memo = await execution.memo()
    running = execution.status == WorkflowExecutionStatus.RUNNING
    status = (
        execution.typed_search_attributes.get(STATUS_ATTRIBUTE) if running else AgentStatus.DELETED
    )
    # Temporal flags a run whose workflow task keeps failing ("category=WorkflowTaskFailed", ...).
    problems = execution.typed_search_attributes.get(REPORTED_PROBLEMS) if running else None
    if problems:
        status = AgentStatus.NEEDS_ATTENTION
    updated = execution.close_time or execution.start_time
    return agent_pb2.Agent(
        agent_id=execution.id.removeprefix(WORKFLOW_ID_PREFIX),
        goal=memo.get("goal", ""),
        status=status or AgentStatus.IDLE,
        created_at=timestamp(float(memo.get("created_at", execution.start_time.timestamp()))),
        updated_at=timestamp(updated.timestamp()),
        metadata=memo.get("metadata", {}),
        model=memo.get("model", ""),
        parent_id=execution.typed_search_attributes.get(PARENT_ATTRIBUTE) or "",
        attention=f"Temporal reports {', '.join(problems)}" if problems else "",
    )

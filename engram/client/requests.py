"""The protobuf requests behind each client method, built in one place for both clients."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.struct_pb2 import Struct

from engram.client.hooks import Decision, ToolOutcome
from engram.v1 import agent_pb2

ToolSpec = str | agent_pb2.Tool


def create_agent(
    *,
    model: str,
    goal: str,
    system_prompt: str,
    tools: Sequence[ToolSpec],
    temperature: float | None,
    max_context_tokens: int | None,
    metadata: Mapping[str, str] | None,
    double_texting: str = "",
) -> agent_pb2.CreateAgentRequest:
    config = agent_pb2.AgentConfig(
        temperature=temperature or 0.0,
        max_context_tokens=max_context_tokens or 0,
        double_texting=double_texting,
    )
    return agent_pb2.CreateAgentRequest(
        model=model,
        goal=goal,
        system_prompt=system_prompt,
        tools=[agent_pb2.Tool(name=t) if isinstance(t, str) else t for t in tools],
        config=config,
        metadata=dict(metadata or {}),
    )


def user_input(agent_id: str, content: str, message_id: str) -> agent_pb2.ClientMessage:
    return agent_pb2.ClientMessage(
        agent_id=agent_id, message_id=message_id, user_input=agent_pb2.UserInput(content=content)
    )


def approval(
    agent_id: str,
    call_id: str,
    *,
    approved: bool = False,
    reason: str = "",
    edited_input: Mapping[str, Any] | str | None = None,
    response: str = "",
    stop_asking: bool = False,
    decided_by: str = "",
) -> agent_pb2.ControlAgentRequest:
    edited = (
        edited_input
        if isinstance(edited_input, str) or edited_input is None
        else json.dumps(dict(edited_input))
    )
    return agent_pb2.ControlAgentRequest(
        agent_id=agent_id,
        approval=agent_pb2.Approval(
            call_id=call_id,
            approved=approved,
            reason=reason,
            edited_input_json=edited or "",
            response=response,
            stop_asking=stop_asking,
            decided_by=decided_by,
        ),
    )


def tool_result(
    agent_id: str, call_id: str, output: str, *, is_error: bool, error_message: str
) -> agent_pb2.ControlAgentRequest:
    return agent_pb2.ControlAgentRequest(
        agent_id=agent_id,
        tool_result=agent_pb2.ToolResult(
            call_id=call_id, output=output, is_error=is_error, error_message=error_message
        ),
    )


def control(agent_id: str, command: str, reason: str = "") -> agent_pb2.ControlAgentRequest:
    request = agent_pb2.ControlAgentRequest(agent_id=agent_id)
    if command == "pause":
        request.pause.reason = reason
    else:
        getattr(request, command).SetInParent()
    return request


def edit(
    agent_id: str,
    *,
    goal: str | None = None,
    system_prompt: str | None = None,
    temperature: float | None = None,
    max_context_tokens: int | None = None,
    memory: Mapping[str, str | None] | None = None,
    double_texting: str | None = None,
    description: str = "",
) -> agent_pb2.ControlAgentRequest:
    """Only the fields given are changed; a note set to "" or None is deleted."""
    values: dict[str, Any] = {
        "goal": goal,
        "system_prompt": system_prompt,
        "temperature": temperature,
        "max_context_tokens": max_context_tokens,
        "memory": dict(memory) if memory is not None else None,
        "double_texting": double_texting,
    }
    patch = Struct()
    patch.update({k: v for k, v in values.items() if v is not None})
    return agent_pb2.ControlAgentRequest(
        agent_id=agent_id, edit=agent_pb2.Edit(patch=patch, description=description)
    )


def decision(agent_id: str, call_id: str, decided: Decision) -> agent_pb2.ControlAgentRequest:
    """An approver's decision on a call, as the approval to send."""
    return approval(
        agent_id,
        call_id,
        approved=decided.approved,
        reason=decided.reason,
        edited_input=decided.edited_input,
        response=decided.response,
        stop_asking=decided.stop_asking,
        decided_by=decided.decided_by,
    )


def outcome(agent_id: str, call_id: str, ran: ToolOutcome) -> agent_pb2.ControlAgentRequest:
    """What a client tool's run came to, as the result to send."""
    return tool_result(
        agent_id, call_id, ran.output, is_error=ran.is_error, error_message=ran.error_message
    )

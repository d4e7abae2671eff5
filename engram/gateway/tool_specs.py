"""Tools at the API edge: resolving the tools a client names, and its answers to tool calls.

A bare name (`current_time`, `files__read`) picks a tool some worker runs, from the catalog the
workers publish; a name with a parameters schema that no worker runs is a client tool, which the
client runs itself. Anything else is refused with INVALID_ARGUMENT naming what is available.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace

from google.protobuf.json_format import MessageToDict, ParseDict

from engram.auth import principal
from engram.gateway.errors import invalid
from engram.tools import approval_policy
from engram.tools.registry import TOOL_NAME
from engram.v1 import agent_pb2
from engram.vocabulary import ApprovalPolicy, ToolKind
from engram.workflows.function_tool import function_tool
from engram.workflows.memory import REMEMBER
from engram.workflows.model_json import NotAnObject, UnusableJSON, parse_object
from engram.workflows.types import AgentTool, ClientToolResult, Decision

MAX_TOOLS = 128
MAX_TOOL_JSON_BYTES = 64 * 1024


def resolve(requested: Sequence[agent_pb2.Tool], catalog: list[AgentTool]) -> list[AgentTool]:
    """The agent's tools, from what a client asked for and what the workers offer."""
    if len(requested) > MAX_TOOLS:
        raise invalid(f"at most {MAX_TOOLS} tools")
    offered = {t.name: t for t in catalog}
    names = [t.name for t in requested]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise invalid("every tool needs a unique, non-empty name")
    tools: list[AgentTool] = []
    for wanted in requested:
        if wanted.name == REMEMBER:
            continue  # every agent has it
        if wanted.approval and wanted.approval not in set(ApprovalPolicy):
            choices = ", ".join(ApprovalPolicy)
            raise invalid(f"tool {wanted.name}: approval must be one of {choices} (or empty)")
        timeout = wanted.approval_timeout.ToTimedelta().total_seconds()
        if timeout < 0:
            raise invalid(f"tool {wanted.name}: approval_timeout must not be negative")
        base = offered.get(wanted.name)
        if base is None:
            base = _client_tool(wanted, sorted(offered))
        tool = replace(
            base,
            requires_confirmation=base.requires_confirmation or wanted.requires_confirmation,
            approval=wanted.approval,
            approval_timeout_seconds=timeout,
            # What the workers' catalog requires, their operator does; a client's own is its own.
            confirmation_mandatory=base.requires_confirmation,
        )
        if problem := approval_policy.refusal(tool, tool.approval):
            raise invalid(problem)
        tools.append(tool)
    return tools


def as_offered(catalog: Sequence[AgentTool]) -> list[AgentTool]:
    """The workers' tools as an agent is given them: what they require is mandatory."""
    return [replace(t, confirmation_mandatory=t.requires_confirmation) for t in catalog]


def check_approvals(approvals: Mapping[str, str], tools: Sequence[AgentTool]) -> None:
    """INVALID_ARGUMENT if an Edit's policy changes lower a confirmation the workers' operator
    requires. `tools` are the Edit's own, else the catalog's: the agent checks its own again."""
    try:
        approval_policy.check_changes(approvals, tools)
    except approval_policy.PolicyRefused as err:
        raise invalid(str(err)) from None


def _client_tool(wanted: agent_pb2.Tool, available: list[str]) -> AgentTool:
    if not wanted.HasField("parameters_schema"):
        names = ", ".join(available) or "none: start a worker with --tools or --mcp"
        raise invalid(
            f"unknown tool {wanted.name!r}: give a parameters_schema for a tool your client runs, "
            f"or name one the workers run ({names})"
        )
    if not TOOL_NAME.match(wanted.name):
        raise invalid(f"tool name {wanted.name!r} must be 1-64 letters, digits, '_' or '-'")
    schema = MessageToDict(wanted.parameters_schema)
    if schema.get("type", "object") != "object":
        raise invalid(f"tool {wanted.name}: parameters_schema must describe a JSON object")
    if len(json.dumps(schema)) + len(wanted.description) > MAX_TOOL_JSON_BYTES:
        raise invalid(
            f"tool {wanted.name}: schema and description over {MAX_TOOL_JSON_BYTES} bytes"
        )
    return AgentTool(
        name=wanted.name,
        kind=ToolKind.CLIENT,
        function=function_tool(wanted.name, wanted.description, schema),
    )


def to_proto(tool: AgentTool) -> agent_pb2.Tool:
    function = tool.function.get("function", {})
    message = agent_pb2.Tool(
        name=tool.name,
        description=str(function.get("description", "")),
        requires_confirmation=tool.requires_confirmation,
        approval=tool.approval,
        read_only=tool.read_only,
        kind=tool.kind,
    )
    if function.get("parameters"):
        ParseDict(function["parameters"], message.parameters_schema)
    if tool.approval_timeout_seconds:
        message.approval_timeout.FromNanoseconds(round(tool.approval_timeout_seconds * 1e9))
    return message


def decision(approval: agent_pb2.Approval) -> Decision:
    call_id = _call_id(approval.call_id, "approval")
    if approval.edited_input_json:
        try:
            parse_object(approval.edited_input_json)
        except NotAnObject:
            raise invalid("approval.edited_input_json must be a JSON object") from None
        except UnusableJSON as err:
            raise invalid(f"approval.edited_input_json is {err}") from None
    return Decision(
        call_id=call_id,
        approved=approval.approved,
        reason=approval.reason[:2000],
        edited_arguments=approval.edited_input_json,
        response=approval.response,
        stop_asking=approval.stop_asking,
        decided_by=decided_by(principal.current(), approval.decided_by),
    )


def decided_by(caller: principal.Principal, claimed: str) -> str:
    """Who decided, as the gateway knows it: the key and its tenant. A client's own words would
    let anyone sign for anyone; they are kept only without keys, where nobody is anybody."""
    if not caller.scoped:
        return claimed[:200]
    return f"key {caller.key_id} (tenant {caller.tenant})"


def client_result(result: agent_pb2.ToolResult, limit: int) -> ClientToolResult:
    call_id = _call_id(result.call_id, "tool_result")
    size = len(result.output.encode()) + len(result.error_message.encode())
    if size > limit:
        raise invalid(f"tool_result is {size} bytes; the limit is {limit}")
    return ClientToolResult(
        call_id=call_id,
        output=result.output,
        is_error=result.is_error,
        error_message=result.error_message,
    )


def _call_id(value: str, what: str) -> str:
    if not value or len(value) > 128:
        raise invalid(f"{what}.call_id is required (the tool_call's call_id)")
    return value

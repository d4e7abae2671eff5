"""Client tools and approvals decided in code.

A client tool is a plain function the agent's model may call; the client runs it when the agent
waits for its result. Its signature is its contract, as for worker tools (`engram.tools.tool`): the
JSON schema declared to the agent is built from the type hints, and the model's arguments are
checked against it before the function runs. An approver is a callback shown each call that waits
for approval; it decides, or returns None to leave the decision to a person elsewhere.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
from google.protobuf.struct_pb2 import Struct

from engram.client.events import ToolCall
from engram.tools.registry import ToolContext, WorkerTool, tool, worker_tool_of
from engram.v1 import agent_pb2


@dataclass(frozen=True)
class Decision:
    """An answer to a call awaiting approval. Build one with `approve`, `deny` or `respond`."""

    approved: bool = False
    reason: str = ""
    edited_input: Mapping[str, Any] | None = None
    response: str = ""
    stop_asking: bool = False
    decided_by: str = ""

    @staticmethod
    def approve(
        *,
        edited_input: Mapping[str, Any] | None = None,
        stop_asking: bool = False,
        decided_by: str = "",
    ) -> Decision:
        return Decision(
            approved=True, edited_input=edited_input, stop_asking=stop_asking, decided_by=decided_by
        )

    @staticmethod
    def deny(reason: str = "", *, decided_by: str = "") -> Decision:
        return Decision(approved=False, reason=reason, decided_by=decided_by)

    @staticmethod
    def respond(text: str, *, decided_by: str = "") -> Decision:
        """Answer in the tool's place: `text` is its result; it does not run."""
        return Decision(response=text, decided_by=decided_by)


ApprovalAnswer = Decision | bool | None
Approver = Callable[[ToolCall], ApprovalAnswer]
AsyncApprover = Callable[[ToolCall], ApprovalAnswer | Awaitable[ApprovalAnswer]]


def as_decision(answer: ApprovalAnswer) -> Decision | None:
    if isinstance(answer, bool):
        return Decision(approved=answer)
    return answer


@dataclass(frozen=True)
class ToolOutcome:
    output: str
    is_error: bool = False
    error_message: str = ""


class ClientTools:
    """Functions by tool name, described for CreateAgent and run for a waiting call."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self._tools = {name: _describe(name, fn) for name, fn in (functions or {}).items()}

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def declarations(self) -> list[agent_pb2.Tool]:
        """The tools as CreateAgent declares client tools: name, description, JSON schema."""
        declared = []
        for name, worker_tool in self._tools.items():
            function = worker_tool.describe().function["function"]
            schema = Struct()
            schema.update(function["parameters"])
            declared.append(
                agent_pb2.Tool(
                    name=name,
                    description=function["description"],
                    parameters_schema=schema,
                    requires_confirmation=worker_tool.policy.requires_confirmation,
                )
            )
        return declared

    def start(self, call: ToolCall, agent_id: str) -> Any:
        """Call the function: its result, or a coroutine for an async one. Raises what it raises,
        and pydantic.ValidationError for arguments that do not fit its signature."""
        worker_tool = self._tools[call.name]
        context = ToolContext(call_id=call.call_id, agent_id=agent_id)
        return worker_tool.run(worker_tool.bind(call.arguments, context))


def outcome_of(result: Any) -> ToolOutcome:
    if isinstance(result, str):
        return ToolOutcome(result)
    if isinstance(result, pydantic.BaseModel):
        return ToolOutcome(result.model_dump_json())
    return ToolOutcome(json.dumps(result, default=str))


def failure(err: BaseException) -> ToolOutcome:
    if isinstance(err, pydantic.ValidationError):
        message = f"invalid arguments: {err.error_count()} error(s): " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
    else:
        message = f"{type(err).__name__}: {err}"
    return ToolOutcome(f"error: {message}", is_error=True, error_message=message)


def _describe(name: str, fn: Callable[..., Any]) -> WorkerTool:
    marked = worker_tool_of(fn)
    if marked is not None:
        return marked

    # Described through a wrapper so that the caller's function is left unmarked.
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    described = worker_tool_of(tool(name=name)(wrapper))
    assert described is not None
    return described

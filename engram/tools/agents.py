"""Other agents as tools: how they are named, offered to the model and addressed.

`agent_<id>` is another Engram agent, given to an agent in `CreateAgent.tools` (OpenAI's function
names allow letters, digits, `_` and `-` only, hence not `agent:<id>`); `create_helper` makes a
new agent for a sub-task. Either call runs as the activity `tool:<name>`
(engram/activities/delegation.py), which sends the task to the agent as a user message and waits
for that turn: the reply is the call's result. Plain, deterministic code, safe in workflows.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from engram.vocabulary import ToolKind, ToolName
from engram.workflows.function_tool import function_tool
from engram.workflows.types import AgentTool

AGENT_TOOL_PREFIX = "agent_"
_AGENT_TOOL = re.compile(
    AGENT_TOOL_PREFIX + r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
# A sub-task may take long: the other agent may itself wait for a person's approval. The call
# heartbeats, so a lost worker is noticed within seconds all the same.
DELEGATION_TIMEOUT_SECONDS = 24 * 3600.0
DELEGATION_RETRIES = 2
DESCRIPTION_CHARS = 1000

_TASK = {
    "type": "string",
    "description": "the sub-task, as a message to the agent: say everything it needs to know",
}


def agent_tool_name(agent_id: str) -> str:
    return AGENT_TOOL_PREFIX + agent_id


def referenced_agent(name: str) -> str | None:
    """The agent a tool name refers to (`agent_<id>`), or None for any other tool."""
    found = _AGENT_TOOL.fullmatch(name.lower())
    return found[1] if found else None


def is_delegation(name: str) -> bool:
    """The call is run by asking another agent (or a new helper)."""
    return name == ToolName.CREATE_HELPER or referenced_agent(name) is not None


def agent_tool(agent_id: str, goal: str) -> AgentTool:
    """Agent `agent_id` as a tool: the model gives it a task; its goal says what it is for."""
    about = " ".join(goal.split())[:DESCRIPTION_CHARS] or "(no goal given)"
    return _delegation(
        agent_tool_name(agent_id),
        f"Ask another agent to do a sub-task; its reply is the result. Its goal: {about}",
        {"task": _TASK},
    )


def helper_tool() -> AgentTool:
    return _delegation(
        ToolName.CREATE_HELPER,
        "Create a helper agent for a sub-task and give it the task: a new agent with a goal of "
        "its own, which answers the task; its reply is the result. Use it for a piece of work "
        "that deserves a fresh, focused conversation.",
        {
            "goal": {
                "type": "string",
                "description": "what the helper is for, e.g. 'Review SQL queries for index use.'",
            },
            "task": _TASK,
        },
    )


def delegated_message_id(parent_id: str, call_id: str) -> str:
    """The id of the message a call sends: the same on every attempt, so a retried call is
    answered by the turn it started rather than a second one."""
    return f"{call_id.replace('_', '-')}@{parent_id}"


def helper_id(parent_id: str, call_id: str) -> str:
    """The id of the helper a call creates: the same on every attempt."""
    return str(uuid.uuid5(uuid.UUID(parent_id), call_id))


def _delegation(name: str, description: str, properties: dict[str, Any]) -> AgentTool:
    return AgentTool(
        name=name,
        kind=ToolKind.AGENT,
        function=function_tool(
            name,
            description,
            {"type": "object", "properties": properties, "required": list(properties)},
        ),
        timeout_seconds=DELEGATION_TIMEOUT_SECONDS,
        retries=DELEGATION_RETRIES,
    )

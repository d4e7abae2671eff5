"""Who may lower a tool's approval: a confirmation its author or operator requires is mandatory.

A tool declared `requires_confirmation` where an operator controls it (a worker tool's `@tool`,
an MCP server's destructive hint or the worker's MCP policy) keeps asking a person whatever a
client says: `always` for it is refused when an agent is created or edited, a decision's
`stop_asking` does not apply to it, and the agent's `auto_approve_read_only` does not cover it.
A client may still make it stricter (`never`) and may lower what it asked for itself.

Checked twice: by the gateway, for a clear INVALID_ARGUMENT, and by the agent's workflow, which
holds the tools, so a client that reaches Temporal some other way gains nothing. Workflow-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engram.vocabulary import ApprovalPolicy
from engram.workflows.types import AgentTool


class PolicyRefused(ValueError):
    """A client asked to lower a confirmation it may not lower."""


def mandatory(tool: AgentTool) -> bool:
    return tool.confirmation_mandatory


def refusal(tool: AgentTool, policy: str) -> str:
    """Why `policy` may not be set for `tool`, or "" when it may."""
    if policy == ApprovalPolicy.ALWAYS and mandatory(tool):
        return (
            f"tool {tool.name}: approval cannot be 'always': its operator requires a person to "
            "confirm each call (use 'ask' or 'never')"
        )
    return ""


def check_tools(tools: Iterable[AgentTool]) -> None:
    """PolicyRefused if a tool's own `approval` lowers a mandatory confirmation."""
    for tool in tools:
        if problem := refusal(tool, tool.approval):
            raise PolicyRefused(problem)


def check_changes(approvals: Mapping[str, str], tools: Iterable[AgentTool]) -> None:
    """PolicyRefused if a change of policies (an Edit's `approvals`, by tool name) lowers a
    mandatory confirmation of one of `tools`."""
    by_name = {t.name: t for t in tools}
    for name, policy in approvals.items():
        tool = by_name.get(name)
        if tool is not None and (problem := refusal(tool, policy)):
            raise PolicyRefused(problem)

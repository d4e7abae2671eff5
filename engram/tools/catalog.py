"""The catalog: the tools a worker offers, as agents are given them.

Each worker publishes its catalog to the shared store when it starts; gateways read it to resolve
the tool names in CreateAgent and Edit, and to answer ListTools.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import replace

from engram.tools import ToolCatalog, ToolDescription
from engram.vocabulary import ToolKind
from engram.workflows.types import AgentTool


def agent_tool(description: ToolDescription) -> AgentTool:
    policy = description.policy
    return AgentTool(
        name=description.name,
        # MCP tools are named `<server>__<tool>`; worker tools may not contain `__`.
        kind=ToolKind.MCP if "__" in description.name else ToolKind.WORKER,
        function=description.function,
        timeout_seconds=policy.timeout_seconds,
        retries=policy.retries,
        requires_confirmation=policy.requires_confirmation,
        read_only=policy.read_only,
        fast=policy.fast,
    )


def agent_tools(catalog: ToolCatalog) -> list[AgentTool]:
    return [agent_tool(d) for d in catalog.tools]


def require_confirmation(catalog: ToolCatalog, patterns: Iterable[str]) -> ToolCatalog:
    """The catalog with every tool whose name matches one of `patterns` (names or globs such as
    `files__*`) requiring a person's confirmation: the operator's policy, which no client can
    lower (engram/tools/approval_policy.py)."""
    wanted = [p for p in patterns if p]
    if not wanted:
        return catalog
    tools = [
        replace(d, policy=replace(d.policy, requires_confirmation=True))
        if any(fnmatch.fnmatchcase(d.name, p) for p in wanted)
        else d
        for d in catalog.tools
    ]
    return ToolCatalog(tools=tools, problems=catalog.problems)

"""The OpenAI function tool, the one shape every tool is offered to a model in: built here only.

Workflow code builds some of these (memory's and a run's tools), and the dicts are part of the
LLM activity's input: key order and content must stay as they are for recorded histories to
replay. Workflow code imports this module, so it uses nothing but the standard library.
"""

from __future__ import annotations

from typing import Any


def function_tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """{"type": "function", "function": {"name", "description", "parameters"}}."""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }

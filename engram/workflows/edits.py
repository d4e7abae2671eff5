"""What an Edit changes (the goal, instructions, settings, notes, tools), checked whole first.

Workflow code: the edit handler checks with `check` (in its validator, so a refused edit leaves
no trace) and applies with `apply`; the next turn uses what changed.
"""

from __future__ import annotations

from dataclasses import replace

from temporalio import workflow

from engram.tools import approval_policy
from engram.vocabulary import DoubleTexting
from engram.workflows import memory
from engram.workflows.types import AgentState, EditInput, MemoryNote


def check(state: AgentState, edit: EditInput) -> None:
    """ValueError if any part of the edit cannot be applied."""
    # Try the notes on a copy: an edit is applied whole or not at all.
    trial = [MemoryNote(n.name, n.content) for n in state.notes]
    for name, content in edit.memory.items():
        try:
            memory.write(trial, name, content, 0.0)
        except memory.NoteError as err:
            raise ValueError(f"memory note {name!r}: {err}") from None
    if edit.double_texting and edit.double_texting not in set(DoubleTexting):
        raise ValueError(f"double_texting must be one of {', '.join(DoubleTexting)}")
    # A validator: a refusal leaves no trace in history, so no patch is needed.
    tools = state.tools if edit.tools is None else edit.tools
    approval_policy.check_tools(edit.tools or [])
    approval_policy.check_changes(edit.approvals, tools)


def apply(state: AgentState, edit: EditInput, now: float) -> list[str]:
    """Make the edit; the names of the fields it set."""
    spec = state.spec
    if edit.goal is not None:
        spec.goal = edit.goal
        workflow.upsert_memo({"goal": spec.goal})
    if edit.system_prompt is not None:
        spec.system_prompt = edit.system_prompt
    # spec.config is the AgentConfig as proto3 JSON, which GetAgent returns: keep it true.
    if edit.temperature is not None:
        spec.settings = replace(spec.settings, temperature=edit.temperature or None)
        spec.config["temperature"] = edit.temperature
    if edit.max_context_tokens is not None:
        spec.settings = replace(spec.settings, max_context_tokens=edit.max_context_tokens)
        spec.config["maxContextTokens"] = edit.max_context_tokens
    if edit.double_texting is not None:
        spec.settings = replace(
            spec.settings,
            double_texting=DoubleTexting(edit.double_texting or DoubleTexting.QUEUE),
        )
        spec.config["doubleTexting"] = edit.double_texting
    if edit.fallback_models is not None:
        spec.settings = replace(spec.settings, fallback_models=list(edit.fallback_models))
        spec.config["fallbackModels"] = list(edit.fallback_models)
    if edit.max_cost_usd is not None:
        spec.settings = replace(spec.settings, max_cost_usd=edit.max_cost_usd)
        spec.config["maxCostUsd"] = edit.max_cost_usd
    for name, content in edit.memory.items():
        memory.write(state.notes, name, content, now)
    if edit.tools is not None:
        state.tools = edit.tools
    state.approvals.update(edit.approvals)
    return [
        name
        for name, value in vars(edit).items()
        if name != "description" and value is not None and value != {}
    ]

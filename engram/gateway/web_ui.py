"""How an agent introduces itself in the Temporal Web UI: a summary line and details, set when the
workflow starts (its state now is the workflow's own current details, engram/workflows/ui.py); and
the summary line of each scheduled wake-up."""

from __future__ import annotations

import json

from engram import WORKFLOW_ID_PREFIX
from engram.workflows.types import AgentSpec, AgentTool
from engram.workflows.wake_up import WakeUp

SUMMARY_CHARS = 200


def summary(spec: AgentSpec) -> str:
    goal = _shortened(spec.goal) or "(no goal)"
    if spec.parent_id:
        # The parent's full id is in the details: the summary line is short.
        return f"{goal} · {spec.model} · sub-agent of {spec.parent_id[:8]}"
    if spec.forked_from:
        return f"{goal} · {spec.model} · fork of {spec.forked_from[:8]} at {spec.fork_sequence}"
    return f"{goal} · {spec.model}"


def wake_up_summary(wake: WakeUp) -> str:
    return f"wake-up {wake.name}: {_shortened(wake.instructions) or '(work on the goal)'}"


def _shortened(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def details(spec: AgentSpec, tools: list[AgentTool], tenant: str) -> str:
    lines = [f"**Agent** `{spec.agent_id}` · model `{spec.model}`"]
    if tenant:
        lines.append(f"**Tenant** {tenant}")
    if spec.parent_id:
        lines.append(f"**Sub-agent of** `{WORKFLOW_ID_PREFIX}{spec.parent_id}`")
    if spec.forked_from:
        lines.append(
            f"**Fork of** `{WORKFLOW_ID_PREFIX}{spec.forked_from}` after message"
            f" {spec.fork_sequence}"
        )
    if spec.goal:
        lines.append(f"**Goal** {spec.goal}")
    if spec.system_prompt:
        lines.append(f"**System prompt**\n\n{spec.system_prompt}")
    if tools:
        lines.append("**Tools** " + ", ".join(f"`{t.name}` ({t.kind})" for t in tools))
    if spec.config:
        lines.append(f"**Config** `{json.dumps(spec.config, sort_keys=True)}`")
    if spec.metadata:
        lines.append(f"**Metadata** `{json.dumps(spec.metadata, sort_keys=True)}`")
    return "\n\n".join(lines)

"""What the Temporal Web UI says about an agent: its status and its state now, in markdown.

Operators look at agents in the Web UI: they filter on its lasting status (a search attribute), and,
besides the summary set at creation (goal, model), each agent keeps its current details up to
date (idle, thinking, working on step n, waiting for a person, sleeping until when; its parent
and sub-agents, by workflow id; turns so far, last message). Deterministic: built from the state.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engram import WORKFLOW_ID_PREFIX
from engram.vocabulary import AgentStatus
from engram.workflows.types import AgentState


def status(state: AgentState, *, turn_in_progress: bool) -> AgentStatus:
    """What the agent is doing, as `Agent.status` and the status search attribute say it."""
    run = state.run
    if not turn_in_progress:
        return AgentStatus.PAUSED if state.paused else AgentStatus.IDLE
    if state.budget_exhausted:
        return AgentStatus.BUDGET_EXHAUSTED
    if state.pending:
        return AgentStatus.WAITING
    if run is not None and run.sleeping_until:
        return AgentStatus.SLEEPING
    if state.quota_until:
        return AgentStatus.WAITING_FOR_QUOTA
    if run is not None:
        return AgentStatus.WORKING
    return AgentStatus.THINKING


def lasting(status: AgentStatus, *, paused: bool) -> AgentStatus:
    """The status as the search attribute keeps it: a chat turn's `thinking` passes in seconds,
    so recording it would cost two history events per turn for a filter nobody can act on in
    time; the agent is filed under what it is between turns."""
    if status != AgentStatus.THINKING:
        return status
    return AgentStatus.PAUSED if paused else AgentStatus.IDLE


def current_details(state: AgentState, completed_turns: int) -> str:
    lines = [f"**{state.status}**"]
    run = state.run
    if run is not None:
        line = f"run `{run.run_id}`: step {run.steps}, {run.tokens} tokens"
        if run.waiting_for_user:
            line += ", waiting for the user's answer"
        lines.append(line)
        if run.sleeping_until:
            lines.append(f"sleeping until {_when(run.sleeping_until)}")
    if state.quota_until:
        lines.append(f"out of quota: waiting until {_when(state.quota_until)}")
    for call in state.pending:
        lines.append(
            f"waiting for {call.waiting_for} of `{call.tool}` ({call.call_id}) "
            f"since {_when(call.since)}"
        )
    if state.status == AgentStatus.PAUSED and state.queue:
        lines.append(f"{len(state.queue)} message(s) waiting for resume")
    if state.spec.parent_id:
        lines.append(f"sub-agent of `{WORKFLOW_ID_PREFIX}{state.spec.parent_id}`")
    if state.children:
        newest = ", ".join(f"`{WORKFLOW_ID_PREFIX}{c}`" for c in state.children[-3:])
        lines.append(f"{len(state.children)} sub-agent(s), newest {newest}")
    lines.append(f"{completed_turns} turns · last activity {_when(state.updated_at)}")
    return "\n\n".join(lines)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

"""What an agent tells about itself (the `describe` query, which GetAgent shows): its settings,
counts, notes, calls waiting, the run in progress and its sub-agents."""

from __future__ import annotations

from engram.workflows.types import AgentInfo, AgentState


def agent_info(state: AgentState, completed_turns: int) -> AgentInfo:
    s = state
    return AgentInfo(
        spec=s.spec,
        status=s.status,
        created_at=s.created_at,
        updated_at=s.updated_at,
        completed_turns=completed_turns,
        tokens_used=s.tokens_used,
        busy_seconds=s.busy_seconds,
        queued_messages=len(s.queue),
        last_seq=s.next_seq - 1,
        notes=s.notes,
        tool_calls=s.tool_calls,
        tools=s.tools,
        pending=s.pending,
        run=s.run,
        # A chat turn counts one step; a run, each of its LLM calls.
        steps=completed_turns
        - s.run_turns
        + s.run_steps
        + (s.run.steps if s.run is not None else 0),
        children=s.children,
        cost_usd=s.cost_usd,
    )


# Sub-agents listed on their parent; older ones are still found by their EngramParent attribute.
CHILDREN_KEPT = 100


def link_child(state: AgentState, agent_id: str) -> bool:
    """Link a sub-agent to this agent; False if it already was."""
    if agent_id in state.children:
        return False
    state.children.append(agent_id)
    del state.children[:-CHILDREN_KEPT]
    return True

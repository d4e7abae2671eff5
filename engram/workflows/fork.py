"""An agent's memory as it was at a point of its transcript: what a fork starts from and a rewind
goes back to. Nothing is re-run: everything is rebuilt from what was recorded.

What is recorded, and so how exact each part is:

- transcript (events, turns): exact, event for event, from the store and the workflow;
- memory notes: the model's `remember` calls up to the point are replayed, exactly. Notes a
  client wrote with Edit are not in the transcript: those the agent has now (names no `remember`
  call ever wrote) are kept as they are now;
- running summary: summaries are not versioned. A point after the newest compaction keeps the
  current summary (it covers only turns before the point). An older point takes the newest summary
  recorded with an archived turn before it (`Turn.summary_after`, recorded since FORK_SUMMARIES),
  or none, and then the turns it would have covered go back verbatim (the next compaction folds
  them again): never a summary of turns after the point;
- settings (goal, instructions, config, tools, approvals): Edit does not version them; the fork
  takes the agent's current ones.

Plain code with no Temporal in it: the gateway plans, the workflow applies a rewind.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

from engram.vocabulary import TOOL_ERROR, AgentStatus, EventKind, TurnOutcome
from engram.workflows import memory
from engram.workflows.types import AgentState, Event, MemoryNote, Turn


class PointInsideTurn(ValueError):
    """The point falls inside a turn (or one still going): there is no memory to rebuild there."""


@dataclass(kw_only=True)
class Rebuilt:
    """The agent's memory at a point; the whole transcript's turns split at the archive line."""

    at: int
    # Turns wholly at or before the point, over the agent's life.
    kept_turns: int
    # The first `archived_turns` kept turns are what `summary` covers (and go to the store).
    archived_turns: int
    archived_completed_turns: int
    summary: str
    # The kept turns after the archived ones: shown to the model verbatim.
    turns: list[Turn]
    notes: list[MemoryNote]
    tokens_used: int
    busy_seconds: float
    tool_calls: int


@dataclass(kw_only=True)
class RewindInput:
    """The `rewind` update: go back to `rebuilt`, if the agent is still where the gateway saw it
    (`expected_next_seq`); the forgotten tail is already in the branch agent `branch_id`."""

    expected_next_seq: int
    branch_id: str
    at: int
    kept_turns: int
    archived_turns: int
    archived_completed_turns: int
    summary: str
    turns: list[Turn] = field(default_factory=list)
    notes: list[MemoryNote] = field(default_factory=list)
    tokens_used: int = 0
    busy_seconds: float = 0.0
    tool_calls: int = 0


@dataclass(kw_only=True)
class ForgetInput:
    """Drop a rewound agent's stored events after `after_seq` and turns from `from_turn` on
    (the `forget_after` activity): its branch holds them. Turns from `from_turn` on are held by
    the workflow again, or forgotten."""

    agent_id: str
    after_seq: int
    from_turn: int


def kept_turn_count(turns: list[Turn], at: int) -> int:
    """How many of the agent's turns (all of them, oldest first) lie wholly at or before `at`.

    Raises PointInsideTurn if `at` falls inside one, or inside a turn that has not ended."""
    kept = 0
    for index, turn in enumerate(turns):
        if turn.outcome and turn.last_seq <= at:
            if kept != index:
                raise PointInsideTurn(f"message {at} falls inside turn {kept + 1}")
            kept += 1
        elif turn.first_seq and turn.first_seq <= at:
            ends = f"ends at message {turn.last_seq}" if turn.outcome else "has not ended"
            raise PointInsideTurn(
                f"message {at} falls inside turn {index + 1}, which starts at message "
                f"{turn.first_seq} and {ends}: choose its end or the message before "
                f"{turn.first_seq}"
            )
    return kept


def rebuild(state: AgentState, turns: list[Turn], events: list[Event], at: int) -> Rebuilt:
    """The memory of the agent whose state is `state` as it was after message `at`.

    `turns` are all of its turns and `events` all of its events (store and workflow together).
    """
    kept = kept_turn_count(turns, at)
    if kept >= state.archived_turns:
        summary, archived = state.summary, state.archived_turns
    else:
        archived, summary = 0, ""
        for index in range(kept - 1, -1, -1):
            if turns[index].summary_after:
                archived, summary = index + 1, turns[index].summary_after
                break
    before = [e for e in events if e.seq <= at]
    kept_list = turns[:kept]
    return Rebuilt(
        at=at,
        kept_turns=kept,
        archived_turns=archived,
        archived_completed_turns=sum(
            1 for t in kept_list[:archived] if t.outcome == TurnOutcome.COMPLETED
        ),
        summary=summary,
        turns=copy.deepcopy(kept_list[archived:]),
        notes=notes_at(state.notes, events, at),
        tokens_used=sum(t.tokens for t in kept_list),
        busy_seconds=sum(max(0.0, t.ended_at - t.started_at) for t in kept_list),
        tool_calls=sum(1 for e in before if e.kind == EventKind.TOOL_CALL),
    )


def notes_at(current: list[MemoryNote], events: list[Event], at: int) -> list[MemoryNote]:
    """The notes after message `at`: the model's successful `remember` calls replayed, and the
    notes no such call ever wrote (a client's, by Edit) as they are now."""
    failed = {e.call_id for e in events if e.kind == EventKind.TOOL_RESULT and e.code == TOOL_ERROR}
    notes: list[MemoryNote] = []
    written: set[str] = set()
    for event in events:
        if event.kind != EventKind.TOOL_CALL or event.code != memory.REMEMBER:
            continue
        name, content = _note_arguments(event.text)
        written.add(name)
        if event.seq > at or event.call_id in failed:
            continue
        try:
            memory.write(notes, name, content, event.ts)
        except memory.NoteError:
            continue  # refused when it was made too
    clients = [copy.copy(n) for n in current if n.name not in written]
    return clients + notes


def _note_arguments(text: str) -> tuple[str, str]:
    try:
        arguments = json.loads(text)
    except ValueError:
        return "", ""
    if not isinstance(arguments, dict):
        return "", ""
    return str(arguments.get("name", "")).strip(), str(arguments.get("content", ""))


def fork_state(
    source: AgentState, rebuilt: Rebuilt, agent_id: str, now: float, archived_through: int
) -> AgentState:
    """A new agent's state: `source`'s settings and the memory `rebuilt`, idle, nothing pending.
    Its events up to `archived_through` and its first `rebuilt.archived_turns` turns are in the
    store (the caller copies them there); none are held."""
    spec = copy.deepcopy(source.spec)
    spec.agent_id = agent_id
    spec.parent_id = ""
    spec.forked_from = source.spec.agent_id
    spec.fork_sequence = rebuilt.at
    return AgentState(
        spec=spec,
        created_at=now,
        updated_at=now,
        status=AgentStatus.IDLE,
        next_seq=rebuilt.at + 1,
        archived_through=archived_through,
        archived_turns=rebuilt.archived_turns,
        archived_completed_turns=rebuilt.archived_completed_turns,
        turns=rebuilt.turns,
        summary=rebuilt.summary,
        notes=rebuilt.notes,
        tokens_used=rebuilt.tokens_used,
        busy_seconds=rebuilt.busy_seconds,
        tool_calls=rebuilt.tool_calls,
        max_history_events=source.max_history_events,
        tools_refused=source.tools_refused,
        tools=copy.deepcopy(source.tools),
        approvals=dict(source.approvals),
        auto_approve_read_only=source.auto_approve_read_only,
        stored_texts=list(source.stored_texts),
    )


def rewind_input(rebuilt: Rebuilt, expected_next_seq: int, branch_id: str) -> RewindInput:
    return RewindInput(
        expected_next_seq=expected_next_seq,
        branch_id=branch_id,
        at=rebuilt.at,
        kept_turns=rebuilt.kept_turns,
        archived_turns=rebuilt.archived_turns,
        archived_completed_turns=rebuilt.archived_completed_turns,
        summary=rebuilt.summary,
        turns=rebuilt.turns,
        notes=rebuilt.notes,
        tokens_used=rebuilt.tokens_used,
        busy_seconds=rebuilt.busy_seconds,
        tool_calls=rebuilt.tool_calls,
    )


def refuse_rewind(state: AgentState, busy: bool, rewind: RewindInput) -> None:
    """ValueError unless the agent is idle and still as the rewind was planned from."""
    if busy or state.queue or state.pending or state.run is not None:
        raise ValueError("the agent is busy: rewind it once it is idle")
    if state.next_seq != rewind.expected_next_seq:
        raise ValueError("the agent has changed since the rewind was planned: try again")


def apply_rewind(state: AgentState, rewind: RewindInput) -> None:
    """Go back to the point, in place. Sequence ids are not reused: new messages keep numbering
    after the forgotten ones, so no id ever means two things to a client."""
    state.events = [e for e in state.events if e.seq <= rewind.at]
    state.archived_through = min(state.archived_through, rewind.at)
    state.turns = rewind.turns
    state.archived_turns = rewind.archived_turns
    state.archived_completed_turns = rewind.archived_completed_turns
    state.summary = rewind.summary
    state.notes = rewind.notes
    state.tokens_used = rewind.tokens_used
    state.busy_seconds = rewind.busy_seconds
    state.tool_calls = rewind.tool_calls
    state.run_steps = state.run_turns = 0
    state.decisions, state.client_results = {}, {}

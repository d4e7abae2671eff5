"""What the client reads about an agent (GetAgent, ListAgents, GetHistory), as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from engram.v1 import agent_pb2


def _time(ts: Timestamp, present: bool = True) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present and (ts.seconds or ts.nanos) else None


@dataclass(frozen=True)
class Note:
    name: str
    content: str
    updated_at: datetime | None = None


@dataclass(frozen=True)
class PendingCall:
    """A tool call waiting for a person's approval or a client tool's result."""

    call_id: str
    tool_name: str
    input_json: str
    waiting_for: str  # engram.vocabulary.Waiting
    message_id: str
    since: datetime | None = None
    deadline: datetime | None = None


@dataclass(frozen=True)
class AgentInfo:
    agent_id: str
    goal: str
    status: str  # engram.vocabulary.AgentStatus
    model: str
    system_prompt: str
    created_at: datetime | None
    updated_at: datetime | None
    turns: int
    tool_calls: int
    tokens_used: int
    queued_messages: int
    last_sequence_id: int
    tools: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()
    pending_calls: tuple[PendingCall, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    # The agent this one is a sub-agent of, and its own sub-agents ("Agents as tools").
    parent_id: str = ""
    children: tuple[str, ...] = ()
    # The agent this one was forked from, after its message `fork_sequence` (ForkAgent).
    forked_from: str = ""
    fork_sequence: int = 0
    # USD spent over its life, and its budget (0: none).
    cost_usd: float = 0.0
    max_cost_usd: float = 0.0

    @staticmethod
    def of(agent: agent_pb2.Agent) -> AgentInfo:
        return AgentInfo(
            agent_id=agent.agent_id,
            goal=agent.goal,
            status=agent.status,
            model=agent.model,
            system_prompt=agent.system_prompt,
            created_at=_time(agent.created_at),
            updated_at=_time(agent.updated_at),
            turns=agent.stats.total_steps,
            tool_calls=agent.stats.tool_calls,
            tokens_used=agent.stats.tokens_used,
            cost_usd=agent.stats.cost_usd,
            max_cost_usd=agent.config.max_cost_usd,
            queued_messages=agent.queued_messages,
            last_sequence_id=agent.last_sequence_id,
            tools=tuple(t.name for t in agent.tools),
            notes=tuple(Note(n.name, n.content, _time(n.updated_at)) for n in agent.memory),
            pending_calls=tuple(
                PendingCall(
                    call_id=p.call_id,
                    tool_name=p.tool_name,
                    input_json=p.input_json,
                    waiting_for=p.waiting_for,
                    message_id=p.message_id,
                    since=_time(p.since),
                    deadline=_time(p.deadline, p.HasField("deadline")),
                )
                for p in agent.pending_calls
            ),
            metadata=dict(agent.metadata),
            parent_id=agent.parent_id,
            children=tuple(agent.children),
            forked_from=agent.forked_from,
            fork_sequence=agent.fork_sequence,
        )


@dataclass(frozen=True)
class TurnRecord:
    """One turn of the transcript: the input, the reply, how it ended."""

    message_id: str
    user: str
    reply: str
    outcome: str  # engram.vocabulary.TurnOutcome; empty while it runs
    error: str
    first_sequence_id: int
    last_sequence_id: int
    started_at: datetime | None
    ended_at: datetime | None

    @staticmethod
    def of(turn: agent_pb2.Turn) -> TurnRecord:
        return TurnRecord(
            message_id=turn.message_id,
            user=turn.user,
            reply=turn.reply,
            outcome=turn.outcome,
            error=turn.error,
            first_sequence_id=turn.first_sequence_id,
            last_sequence_id=turn.last_sequence_id,
            started_at=_time(turn.started_at),
            ended_at=_time(turn.ended_at, turn.HasField("ended_at")),
        )

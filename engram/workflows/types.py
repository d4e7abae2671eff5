"""Typed inputs, outputs and state shared by the workflow, its activities and the gateway.

Everything here is plain dataclasses so the default Temporal JSON converter can carry it and the
workflow sandbox can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engram.vocabulary import AgentStatus, EventKind
from engram.workflows.settings import AgentSettings, migrated_settings

# The default of AgentSpec.settings, told apart from any settings given by identity: a spec made
# without them is a state recorded before they existed, whose settings are in its `config`.
_FROM_CONFIG = AgentSettings()


@dataclass
class AgentSpec:
    """What the agent was created with; only an Edit changes it."""

    agent_id: str
    goal: str
    model: str
    system_prompt: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # Tool and AgentConfig messages as proto3 JSON, stored verbatim for later use. `config` is
    # what GetAgent returns (an Edit keeps it true); workflow code reads `settings` instead.
    tools: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    # Before `settings` existed these two were kept here; only migrating such a state reads them.
    temperature: float | None = None
    max_context_tokens: int = 0
    # The agent this one was created for, as its sub-agent ("" for any other agent).
    parent_id: str = ""
    # The agent this one was forked from (ForkAgent, or a rewind's branch), and the sequence id
    # of the original's message it was forked after.
    forked_from: str = ""
    fork_sequence: int = 0
    # What workflow code decides by. Left out, as by a state recorded before it existed, it is
    # made from `config` as the spec is loaded.
    settings: AgentSettings = _FROM_CONFIG

    def __post_init__(self) -> None:
        if self.settings is _FROM_CONFIG:
            self.settings = migrated_settings(
                self.config, self.temperature, self.max_context_tokens
            )
            self.temperature, self.max_context_tokens = None, 0


@dataclass(kw_only=True)
class Event:
    """One message of the agent's stream; `seq` is its ServerMessage.sequence_id."""

    seq: int
    # An EventKind.
    kind: str
    text: str = ""
    # The Notice for STATUS, the ErrorCode for ERROR, the tool's name for TOOL_CALL, TOOL_ERROR
    # for a TOOL_RESULT that is an error.
    code: str = ""
    message_id: str = ""
    ts: float = 0.0
    # Pairs a TOOL_CALL with its TOOL_RESULT.
    call_id: str = ""
    # FINAL_ANSWER: the `structured` result a run finished with, if any.
    structured: dict[str, Any] | None = None


@dataclass
class Turn:
    """One user message and what became of it."""

    message_id: str
    user: str
    reply_to: str = ""
    first_seq: int = 0
    last_seq: int = 0
    outcome: str = ""
    reply: str = ""
    error: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    tokens: int = 0
    attachments: list[Attachment] = field(default_factory=list)
    # Messages taken into this turn while it ran (double texting), oldest first.
    added: list[str] = field(default_factory=list)
    # A message taken into another turn: that turn's message id (outcome JOINED).
    joined_to: str = ""
    # Set only on an archived turn, the last of those one compaction folded: the summary made
    # then, which a fork at a later point may start from (engram/workflows/fork.py).
    summary_after: str = ""
    # USD its LLM calls cost, as priced by the worker (workflows/cost.py).
    cost_usd: float = 0.0


@dataclass
class MemoryNote:
    """A note the agent keeps on purpose (with its `remember` tool), shown to it on every turn."""

    name: str
    content: str
    updated_at: float = 0.0


@dataclass
class AgentTool:
    """A tool the agent may call, resolved when it was given (CreateAgent or Edit)."""

    name: str
    # A ToolKind.
    kind: str
    # The OpenAI function tool the model is offered: {"type": "function", "function": {...}}.
    function: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 60.0
    # Attempts after the first, for a worker or MCP tool that fails.
    retries: int = 2
    requires_confirmation: bool = False
    read_only: bool = False
    # Read-only and answers in moments: run as a local activity (behind the local-fast-tools patch).
    fast: bool = False
    # An ApprovalPolicy; "" asks when requires_confirmation, else runs without asking.
    approval: str = ""
    # How long an approval may wait; 0 waits as long as it takes. Past it the call is denied.
    approval_timeout_seconds: float = 0.0
    # requires_confirmation was set by the tool's author or operator, not by the client: no
    # client may lower it (engram/tools/approval_policy.py).
    confirmation_mandatory: bool = False


@dataclass
class RunState:
    """An autonomous run in progress: carried across continue-as-new, so a run of a thousand
    steps continues where it was, with its counts and budget."""

    run_id: str
    instructions: str
    started_at: float
    # 0: no limit of time (max_duration), in seconds of wall clock, sleep included.
    max_seconds: float = 0.0
    steps: int = 0
    tokens: int = 0
    # The newest rounds of tool use, sent verbatim; older ones a line each in `earlier`.
    rounds: list[ToolRound] = field(default_factory=list)
    earlier: list[str] = field(default_factory=list)
    # ask_user was called: the user's next message answers, and the run goes on.
    waiting_for_user: bool = False
    sleeping_until: float = 0.0
    cost_usd: float = 0.0


@dataclass(kw_only=True)
class RunInput:
    """Start an autonomous run (ControlAgent.run, ClientMessage.run, or autonomy at creation)."""

    run_id: str
    instructions: str = ""
    reply_to: str = ""


@dataclass(kw_only=True)
class PendingCall:
    """A tool call waiting for a person (approval) or for the client that runs it (result)."""

    call_id: str
    message_id: str
    tool: str
    arguments: str
    # A Waiting.
    waiting_for: str
    since: float
    # When an approval times out (0: never).
    deadline: float = 0.0


@dataclass(kw_only=True)
class Decision:
    """A person's answer to a call awaiting approval."""

    call_id: str
    approved: bool
    reason: str = ""
    # Run the tool with this input instead of the model's.
    edited_arguments: str = ""
    # Answer in the tool's place: this text is the tool's result and the tool does not run.
    response: str = ""
    # Approve this tool's calls on this agent from now on without asking.
    stop_asking: bool = False
    decided_by: str = ""


@dataclass(kw_only=True)
class ClientToolResult:
    """What a client's tool returned (ClientMessage.tool_result)."""

    call_id: str
    output: str
    is_error: bool = False
    error_message: str = ""


@dataclass
class Attachment:
    """A file sent with a user message. Its bytes are in the transcript store's blob table, by
    content hash (a claim check): workflow history only ever carries this reference."""

    name: str
    mime_type: str
    sha256: str
    size: int
    # "image" (sent to the model as an image part) or "text" (inlined with its name).
    kind: str


@dataclass
class PendingMessage:
    message_id: str
    content: str
    reply_to: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    # An autonomous run to start (content: its instructions), not a chat message.
    starts_run: bool = False


@dataclass(kw_only=True)
class Sender:
    """The agent waiting for a delegated task's answer, and its key for it (its tool call)."""

    agent_id: str
    call_id: str


@dataclass(kw_only=True)
class DelegateInput:
    """A task from another agent (the `delegate` update): a user message, and who waits for it."""

    message_id: str
    content: str
    sender: Sender


@dataclass(kw_only=True)
class AgentAnswer:
    """How the turn that answers a delegated task ended (the `agent_answered` signal, and the
    `delegate` update's answer, with no outcome while the turn is still to end)."""

    call_id: str
    message_id: str
    # A TurnOutcome; empty: not ended yet.
    outcome: str = ""
    reply: str = ""
    error: str = ""


@dataclass(kw_only=True)
class Submitted:
    """What became of a task sent to another agent (the `delegate_task` activity)."""

    # Why the task was not taken (bad arguments, no such agent, refused): the call's error.
    refused: str = ""
    # The agent it went to, and its answer if the turn has ended already (a resend).
    agent_id: str = ""
    answer: AgentAnswer | None = None


@dataclass(kw_only=True)
class Asked:
    """A task sent to another agent (`check_delegation`, `withdraw_delegation`)."""

    agent_id: str
    message_id: str
    call_id: str


@dataclass(kw_only=True)
class FollowRunInput:
    """A scheduled wake-up asks to be told when the run it started ends (the `follow_run`
    update)."""

    run_id: str
    # The wake-up's workflow, signalled `run_ended`.
    workflow_id: str


@dataclass(kw_only=True)
class RunEnded:
    """How a followed run ended (the `run_ended` signal, and `follow_run`'s answer, with no
    outcome while the run goes on)."""

    run_id: str
    # A TurnOutcome, or WakeUpOutcome.AGENT_GONE (dropped by a delete); empty: not ended yet.
    outcome: str = ""


@dataclass
class AgentState:
    """The whole of an agent; carried across continue-as-new."""

    spec: AgentSpec
    created_at: float
    updated_at: float = 0.0
    status: str = AgentStatus.IDLE
    paused: bool = False
    # While a turn waits out a rate limit (workflows/quota_wait.py): until when; 0 otherwise.
    quota_until: float = 0.0
    next_seq: int = 1
    events: list[Event] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    queue: list[PendingMessage] = field(default_factory=list)
    tokens_used: int = 0
    busy_seconds: float = 0.0
    # Every event with seq <= archived_through is in the transcript store, not in `events`.
    archived_through: int = 0
    # The oldest `archived_turns` turns are in the transcript store; `summary` is what the
    # model remembers of them.
    archived_turns: int = 0
    archived_completed_turns: int = 0
    summary: str = ""
    # Continue-as-new past this many history events (Temporal's hard limit is 51,200).
    max_history_events: int = 10_000
    notes: list[MemoryNote] = field(default_factory=list)
    tool_calls: int = 0
    # The endpoint refused a request offering tools: this agent's model cannot keep notes.
    tools_refused: bool = False
    # Tools beyond `remember`, and the approval policies changed since creation (by name).
    tools: list[AgentTool] = field(default_factory=list)
    approvals: dict[str, str] = field(default_factory=dict)
    auto_approve_read_only: bool = False
    # The autonomous run in progress, if any; steps of finished runs, in total.
    run: RunState | None = None
    run_steps: int = 0
    # Completed turns that were (parts of) runs: their steps count, not they.
    run_turns: int = 0
    # Calls of the turn in progress waiting for a person or a client, and their answers.
    pending: list[PendingCall] = field(default_factory=list)
    decisions: dict[str, Decision] = field(default_factory=dict)
    client_results: dict[str, ClientToolResult] = field(default_factory=dict)
    # Agents created as this one's sub-agents, newest last (the newest CHILDREN_KEPT).
    children: list[str] = field(default_factory=list)
    # Hashes of long texts of the prompt already in the blob store (workflows/prompt_refs.py).
    stored_texts: list[str] = field(default_factory=list)
    # Tasks from other agents not answered yet: message id -> who to signal when its turn ends.
    senders: dict[str, Sender] = field(default_factory=dict)
    # Runs scheduled wake-ups wait on: run id -> the wake-up's workflow, signalled when it ends.
    run_followers: dict[str, str] = field(default_factory=dict)
    # USD spent on LLM calls over the agent's life; the next call would cross max_cost_usd: the
    # turn waits for a larger budget (workflows/cost.py).
    cost_usd: float = 0.0
    budget_exhausted: bool = False


@dataclass
class ChatInput:
    message_id: str
    content: str
    # Address of the gateway serving this turn: where the activity sends tokens.
    reply_to: str = ""
    attachments: list[Attachment] = field(default_factory=list)


@dataclass
class EditInput:
    """A client's change to the agent (ClientMessage.edit); None leaves a field as it is."""

    goal: str | None = None
    system_prompt: str | None = None
    temperature: float | None = None
    max_context_tokens: int | None = None
    # Memory notes to write: empty content deletes the note.
    memory: dict[str, str] = field(default_factory=dict)
    # The agent's whole new set of tools (resolved by the gateway), and policy changes by name.
    tools: list[AgentTool] | None = None
    approvals: dict[str, str] = field(default_factory=dict)
    # A DoubleTexting policy.
    double_texting: str | None = None
    # The whole new chain of fallback models ([]: none).
    fallback_models: list[str] | None = None
    description: str = ""
    # AgentConfig.max_cost_usd (0: no budget).
    max_cost_usd: float | None = None


@dataclass(kw_only=True)
class WaitTurnInput:
    """Which turn to wait for (the `wait_for_turn` update)."""

    message_id: str


@dataclass(kw_only=True)
class TurnStateInput:
    """Which message to tell the standing of (the `turn_state` query)."""

    message_id: str


@dataclass(kw_only=True)
class WithdrawInput:
    """A message its sender no longer wants answered (the `withdraw_message` update)."""

    message_id: str


@dataclass(kw_only=True)
class ControlInput:
    """A client's control (the `control_agent` update)."""

    # A Command.
    command: str


@dataclass(kw_only=True)
class RelayInput:
    """Where a turn in progress streams from now on (the `relay_turn` signal)."""

    message_id: str
    reply_to: str


@dataclass(kw_only=True)
class SubAgentInput:
    """An agent created as this agent's sub-agent (the `add_sub_agent` signal)."""

    agent_id: str


@dataclass(kw_only=True)
class EventsAfterInput:
    """Which stored events to read (the `events_after` query): those after `seq`."""

    seq: int


@dataclass(kw_only=True)
class TurnResult:
    """Every event of one turn, from its user message to its final answer or error.

    Events at or below `archived_through` are not included: read them from the transcript store.
    """

    message_id: str
    events: list[Event]
    first_seq: int = 0
    last_seq: int = 0
    archived_through: int = 0
    # The turn goes on in the agent's next run (it continued as new mid-run): wait there again.
    continued: bool = False
    # Enough callers wait on this agent's turns already (see workflows/waiters.py): ask again once
    # the turn has ended, which the `turn_state` query tells.
    later: bool = False


@dataclass
class InFlight:
    message_id: str
    reply_to: str
    first_seq: int


@dataclass
class EventsPage:
    """Stored events after a sequence id; those at or below `archived_through` are in the
    transcript store instead."""

    events: list[Event]
    in_flight: InFlight | None = None
    archived_through: int = 0


@dataclass(kw_only=True)
class AgentInfo:
    spec: AgentSpec
    status: str
    created_at: float
    updated_at: float
    completed_turns: int
    tokens_used: int
    busy_seconds: float
    queued_messages: int
    last_seq: int
    notes: list[MemoryNote] = field(default_factory=list)
    tool_calls: int = 0
    tools: list[AgentTool] = field(default_factory=list)
    pending: list[PendingCall] = field(default_factory=list)
    run: RunState | None = None
    # Steps: a chat turn counts one, a run each of its LLM calls.
    steps: int = 0
    children: list[str] = field(default_factory=list)
    cost_usd: float = 0.0


@dataclass
class ChatMessage:
    role: str
    content: str
    attachments: list[Attachment] = field(default_factory=list)
    # In an LLM request: the content is in the blob store under this hash, and `content` is "".
    content_sha256: str = ""


@dataclass
class SummaryRequest:
    """Fold `messages` (older turns) into `previous` (the running summary)."""

    model: str
    previous: str
    messages: list[ChatMessage]


@dataclass
class HistoryPage:
    """The turns still in the workflow; the `archived_turns` before them are in the store."""

    turns: list[Turn]
    archived_turns: int = 0


@dataclass
class ToolCall:
    call_id: str
    name: str
    # JSON, as the model wrote it (not necessarily valid).
    arguments: str


@dataclass
class ToolRound:
    """One round of tool use inside a turn: what the model said and called, and what it got."""

    text: str
    calls: list[ToolCall]
    results: list[str]
    # Messages from the user taken in after this round's results (double texting). A round with
    # no calls only carries such messages.
    then: list[str] = field(default_factory=list)
    # In an LLM request: a result that is in the blob store has its hash here and "" in results.
    result_sha256: list[str] = field(default_factory=list)


@dataclass
class LLMRequest:
    """Input of the LLM activity. Holds no secret: the endpoint key lives in the worker."""

    agent_id: str
    message_id: str
    model: str
    messages: list[ChatMessage]
    # Events already recorded for this turn, re-sent so the gateway can stream from the start.
    prelude: list[Event]
    first_text_seq: int
    reply_to: str = ""
    temperature: float | None = None
    # OpenAI function-tool definitions offered to the model, and the rounds of this turn so far.
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_rounds: list[ToolRound] = field(default_factory=list)
    # Stream the model's reasoning (from endpoints that send it) as THOUGHT pieces.
    thinking: bool = False
    # The agent's context budget: attached text past half of it is cut, with a note (0: never).
    context_tokens: int = 0
    # Store long texts sent inline, and say so in the result (workflows/prompt_refs.py).
    store_texts: bool = False
    # Models to try in order when `model` fails (AgentConfig.fallback_models).
    fallback_models: list[str] = field(default_factory=list)
    # The workflow waits out a long rate limit on a timer: the activity may return `quota_wait`.
    wait_for_quota: bool = False
    # USD the agent may still spend (None: no budget): a call whose worst case costs more is not
    # sent, and the result says BUDGET_EXHAUSTED. The worst case counts `max_output_tokens`.
    budget_usd: float | None = None
    max_output_tokens: int = 0
    # The agent's tenant ("" with auth off), whose daily budget the call is held against and
    # whose spend it counts (engram/activities/tenant_budget.py).
    tenant: str = ""


@dataclass(kw_only=True)
class AnnounceInput:
    """Events of a turn in progress, for its gateway now rather than with the next LLM call."""

    agent_id: str
    reply_to: str
    events: list[Event]


@dataclass
class StreamPiece:
    """A message the activity published: TEXT, THOUGHT, a STATUS notice, or RESTART (a
    regenerated reply)."""

    # TEXT, THOUGHT, STATUS or RESTART (an EventKind).
    kind: str
    text: str
    code: str = ""
    # When it was published (epoch seconds): the stored event keeps the time the client was shown.
    at: float = 0.0


@dataclass
class ReplyCheckpoint:
    """Where an LLM call's heartbeat says its reply so far is: the newest chunk in the blob store
    (activities/reply_checkpoint.py) and how many pieces it covers."""

    checkpoint: str
    pieces: int


@dataclass
class LLMResult:
    outcome: str
    pieces: list[StreamPiece]
    error_code: str = ""
    error_message: str = ""
    tokens: int = 0
    tool_calls: list[ToolCall] = field(default_factory=list)
    tools_refused: bool = False
    # A call that failed for good after heartbeating a checkpoint: its pieces are read from there.
    checkpoint: ReplyCheckpoint | None = None
    # Hashes of the long texts of the request that the activity put in the blob store.
    stored: list[str] = field(default_factory=list)
    # Seconds every model of the chain is out of quota for (a FAILED call the workflow waits out
    # and makes again); 0: none.
    quota_wait: float = 0.0
    # What the endpoint reported the call used (cached tokens are part of prompt_tokens,
    # reasoning tokens part of completion_tokens), and what that cost, by the worker's prices.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def reply(self) -> str:
        """The text after the last restart: what the model finally said."""
        start = 0
        for i, piece in enumerate(self.pieces):
            if piece.kind == EventKind.RESTART:
                start = i + 1
        return "".join(p.text for p in self.pieces[start:] if p.kind == EventKind.TEXT)

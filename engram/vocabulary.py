"""Every name that crosses a boundary: what a client can receive, what history records.

The one place to read to learn which messages an agent sends and in which states it can be. Each
enum is a `StrEnum`, equal to the plain string it names, so the values written to workflow history,
the transcript store and the wire are the same strings as before these enums existed, and
recorded histories replay unchanged. Add a member here before using a new string anywhere.
"""

from __future__ import annotations

from enum import StrEnum

from temporalio.common import SearchAttributeKey


class EventKind(StrEnum):
    """Kinds of stream event (`Event.kind`), one per `ServerMessage` payload Engram emits."""

    USER_MESSAGE = "user_message"
    """The user's input, now durably recorded: the first message of every turn."""
    STATUS = "status"
    """A notice (`Notice`): `Event.code` names it, `Event.text` says it for people."""
    TEXT = "text"
    """A piece of the reply, as the model produces it."""
    THOUGHT = "thought"
    """A piece of the model's reasoning, from endpoints that stream it (`enable_thinking`): never
    part of the reply or of a later prompt."""
    OBSERVATION = "observation"
    """What the agent learned from a tool's result, in short (`enable_observation`)."""
    FINAL_ANSWER = "final_answer"
    """The whole reply: the last message of a turn that completed."""
    ERROR = "error"
    """Why a turn failed (`Event.code` is an `ErrorCode`): the last message of a failed turn."""
    TOOL_CALL = "tool_call"
    """The model called a tool: `Event.code` names it, `Event.text` holds the arguments JSON."""
    TOOL_RESULT = "tool_result"
    """A tool's answer to the call with the same `call_id`; `Event.code` is `TOOL_ERROR` if it
    failed."""
    RESTART = "restart"
    """Only inside the LLM activity's stream: an earlier attempt's text is void. Clients see it as
    the status notice `Notice.RESTARTING`."""


class Notice(StrEnum):
    """`status` notices (`ServerMessage.status.status`)."""

    THINKING = "thinking"
    """A turn has started; the LLM is being called (message: the model's name)."""
    PAUSED = "paused"
    """The agent was paused: new messages wait until it is resumed."""
    RESUMED = "resumed"
    """The agent was resumed and answers what waited."""
    EDITED = "edited"
    """The agent's goal, instructions, settings or notes were changed by an Edit."""
    RESTARTING = "restarting"
    """The reply restarts from the beginning (a retried LLM call): discard the text shown so far."""
    MODEL_SUBSTITUTED = "model_substituted"
    """Another model answers for the one the agent names (the local fallback); said once."""
    MODEL_FAILOVER = "model_failover"
    """The model failed mid-call and the next of the agent's fallback_models answers (the message
    names both); the reply goes on, or restarts when that endpoint cannot continue it."""
    WAITING_FOR_QUOTA = "waiting_for_quota"
    """Every model is out of quota: the agent waits on a durable timer (the message says until
    when), then calls the model again."""
    AWAITING_APPROVAL = "awaiting_approval"
    """A tool call waits for a person: approve, deny or respond to the call named in the message
    (its `call_id` is the preceding `tool_call`'s)."""
    AWAITING_RESULT = "awaiting_result"
    """A client tool's call waits for the client to send its `tool_result`."""
    APPROVED = "approved"
    """A person approved the call (the message says who, and the input if they edited it)."""
    DENIED = "denied"
    """A person denied the call, or its approval timed out; the model is told why."""
    RESPONDED = "responded"
    """A person answered in the tool's place; the answer is the tool's result."""
    RUN_STARTED = "run_started"
    """An autonomous run began (message: its instructions); its steps follow, under its id."""
    SLEEPING = "sleeping"
    """The agent waits on a durable timer (`wait`); the message says until when, and why."""
    AWAKE = "awake"
    """The timer fired (or the wait was cut short by a cancel): the run goes on."""
    LIMIT_REACHED = "limit_reached"
    """A run reached max_steps, max_duration or its token budget; a short report follows as the
    final answer."""
    TOOL_UNAVAILABLE = "tool_unavailable"
    """A tool could not be reached (an MCP server down); the model got an error result."""
    JOINED = "joined"
    """(Ends a message's own turn) the message was taken into the turn in progress, named in the
    notice, which goes on with it (the `steer` and `interrupt` policies, and `queue` in a run)."""
    INTERRUPTED = "interrupted"
    """The LLM call in progress was cut off by a new message (`interrupt`): the text shown since
    the last notice is discarded, and the turn goes on with the message."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """The next LLM call could cross the agent's max_cost_usd, or its tenant's daily budget: it
    was not sent. The message says which budget, what was spent and what the call could cost; an
    Edit raising max_cost_usd resumes the turn, and for the tenant's budget a resume (or an Edit,
    or the next UTC day) tries the call again."""
    BUDGET_RAISED = "budget_raised"
    """An Edit raised max_cost_usd past what the waiting call could cost, or an agent waiting for
    its tenant's daily budget was resumed (or a new UTC day began): the call is tried again."""


class AgentStatus(StrEnum):
    """`Agent.status`, and the `EngramStatus` search attribute operators filter on."""

    IDLE = "idle"
    """Waiting for a message."""
    THINKING = "thinking"
    """A turn is in progress."""
    PAUSED = "paused"
    """Paused: messages queue until resume."""
    WORKING = "working"
    """An autonomous run is taking steps."""
    SLEEPING = "sleeping"
    """An autonomous run sleeps until a time (`Agent.run.sleeping_until`)."""
    WAITING = "waiting"
    """A tool call waits for a person's approval or a client tool's result (`Agent.pending_calls`
    says which)."""
    WAITING_FOR_QUOTA = "waiting_for_quota"
    """A turn waits until the endpoint's rate limit lifts (a durable timer; no worker is held)."""
    DELETED = "deleted"
    """Ended by DeleteAgent; its transcript stays readable."""
    BUDGET_EXHAUSTED = "budget_exhausted"
    """Its next LLM call could cross `AgentConfig.max_cost_usd` (the turn waits until an Edit
    raises it) or its tenant's daily budget (the turn waits for a resume, an Edit or the next UTC
    day): the call was not sent."""
    NEEDS_ATTENTION = "needs_attention"
    """Its workflow task fails, again on every retry (`Agent.attention` says why): it cannot
    answer until an operator repairs it. GetAgent shows it, read from Temporal, not the agent."""


class TurnOutcome(StrEnum):
    """How a turn ended (`Turn.outcome`); empty while it runs."""

    COMPLETED = "completed"
    """The model answered; the reply is part of the agent's memory."""
    FAILED = "failed"
    """The LLM call failed; nothing of the turn is remembered. Retry runs it again."""
    CANCELLED = "cancelled"
    """Cancelled by a client; the partial reply is discarded. Retry runs it again."""
    JOINED = "joined"
    """The message was taken into another turn in progress (`Turn.joined_to`), which answers it."""


class ToolName(StrEnum):
    """Tools Engram itself gives the model."""

    REMEMBER = "remember"
    """Save, replace or delete a memory note (every agent)."""
    FINISH = "finish"
    """End an autonomous run with the answer (and `structured`, a JSON object, if given)."""
    WAIT = "wait"
    """Sleep on a durable timer: `seconds` or `until`, and a `reason`."""
    ASK_USER = "ask_user"
    """Stop the run until the user answers the `question`."""
    CREATE_HELPER = "create_helper"
    """Create a helper agent with a `goal` and give it a `task`; its reply is the result (an agent
    given it in `CreateAgent.tools`)."""


class Command(StrEnum):
    """Controls a client sends (Chat stream or ControlAgent): `ControlInput.command`."""

    PAUSE = "pause"
    """Hold new messages in the queue."""
    RESUME = "resume"
    """Answer what waited, and new messages again."""
    CANCEL = "cancel"
    """Stop the turn in progress; the LLM request is cut off."""
    RETRY = "retry"
    """Queue the last failed or cancelled turn again, as `<message id>#retry<n>`."""


class ErrorType(StrEnum):
    """`ApplicationError.type`s the workflow raises to the gateway, which maps each to a status."""

    FAILED_PRECONDITION = "FailedPrecondition"
    """The agent is not in a state to do this (deleted, nothing to retry): FAILED_PRECONDITION."""
    ACCEPTED_UPDATE_COMPLETED_WORKFLOW = "AcceptedUpdateCompletedWorkflow"
    """Temporal's: the workflow ended after accepting the update (deleted mid-turn)."""


class ErrorCode(StrEnum):
    """`error.code` of a turn that failed."""

    CANCELLED = "CANCELLED"
    """The turn was cancelled (an outcome, shown as an error to the stream that asked for it)."""
    LLM_ERROR = "LLM_ERROR"
    """The LLM call failed for a reason Engram cannot name more precisely."""
    LLM_TIMEOUT = "LLM_TIMEOUT"
    """The endpoint did not answer, or stopped sending tokens, within the timeout."""
    LLM_UNREACHABLE = "LLM_UNREACHABLE"
    """Nothing answers at the endpoint's address (after a short retry budget)."""
    LLM_UNAUTHENTICATED = "LLM_UNAUTHENTICATED"
    """HTTP 401: the endpoint refused the API key."""
    LLM_PERMISSION_DENIED = "LLM_PERMISSION_DENIED"
    """HTTP 403."""
    LLM_NOT_FOUND = "LLM_NOT_FOUND"
    """HTTP 404: an unknown model, or a wrong base URL."""
    TEXT_MISSING = "TEXT_MISSING"
    """A long text the prompt names by hash is not in the blob store; the workflow sends it
    inline instead, so no turn ends with it."""
    BUDGET_EXHAUSTED = "BUDGET_EXHAUSTED"
    """(An LLM call's result, not a turn's end) the call could cross the agent's budget and was
    not sent; the turn waits for an Edit to raise the budget."""
    TENANT_BUDGET_EXHAUSTED = "TENANT_BUDGET_EXHAUSTED"
    """(An LLM call's result) the call could cross its tenant's daily budget and was not sent;
    the turn waits for a resume, an Edit or the next UTC day, then tries it again. A turn of an
    agent on code from before the tenant budget ends with it."""

    @staticmethod
    def http(status: int) -> str:
        """`LLM_HTTP_<status>`: any other HTTP error (429 and 5xx after Temporal's retries)."""
        return f"LLM_HTTP_{status}"


class ToolKind(StrEnum):
    """Where a tool runs."""

    MEMORY = "memory"
    """Engram's own `remember`, inside the workflow."""
    WORKER = "worker"
    """A Python function loaded by the workers (`--tools`), run as an activity."""
    MCP = "mcp"
    """A tool of an MCP server the workers know (`--mcp`), named `<server>__<tool>`, run as an
    activity."""
    CLIENT = "client"
    """Declared by the client with a schema; the client runs it and sends the result back."""
    AGENT = "agent"
    """Another Engram agent (`agent_<id>`), or `create_helper`, which makes one: an activity sends
    it the task as a message and waits for its turn; the reply is the result."""


class ApprovalPolicy(StrEnum):
    """Whether a tool call needs a person's approval."""

    ALWAYS = "always"
    """Run it without asking."""
    NEVER = "never"
    """Never run it: the model is told it is not allowed."""
    ASK = "ask"
    """Ask a person first (the default for a tool that `requires_confirmation`)."""


class DoubleTexting(StrEnum):
    """What becomes of a message that arrives while the agent is working
    (`AgentConfig.double_texting`)."""

    QUEUE = "queue"
    """The default: answered after the chat turn in progress; a run takes it in at its next
    step."""
    STEER = "steer"
    """Taken into the turn in progress at its next safe point (after the tool results in flight,
    before the next LLM call), cancelling nothing; answered on its own if the turn ends first."""
    INTERRUPT = "interrupt"
    """The LLM call in progress is cut off (its partial text discarded) and the message taken in
    at once; tool calls in flight finish first."""
    REJECT = "reject"
    """Refused (FAILED_PRECONDITION) while the agent works on something else."""


class Waiting(StrEnum):
    """What a pending tool call waits for (`PendingToolCall.waiting_for`)."""

    APPROVAL = "approval"
    RESULT = "result"


TOOL_ERROR = "error"
"""`Event.code` of a TOOL_RESULT that is an error."""


class Overlap(StrEnum):
    """What a schedule does with a wake-up that falls due while the agent works on a run
    (`Schedule.overlap`)."""

    SKIP = "skip"
    """Drop it: the next wake-up is the first that falls due after the run."""
    BUFFER_ONE = "buffer_one"
    """Keep one, which starts as soon as the run ends; any more are dropped."""


class WakeUpOutcome(StrEnum):
    """How a scheduled wake-up ended: the wake-up workflow's result, and its memo in the Web UI."""

    WOKE = "woke"
    """It started a run on the agent, and the run has ended."""
    COVERED = "covered"
    """Its time came before the previous wake-up's run started (missed while the engine was
    down, or while that wake-up waited): that run did its work."""
    BUSY = "busy"
    """The agent was working on another run and the schedule skips."""
    AGENT_GONE = "agent_gone"
    """The agent was deleted; the schedule, with nothing left to wake, was deleted too."""


class Query(StrEnum):
    """The agent workflow's queries: every caller names them by these, as history does."""

    DESCRIBE = "describe"
    """The agent's settings, counts, notes, calls waiting and run in progress (GetAgent)."""
    EVENTS_AFTER = "events_after"
    """Stored events after a sequence id (`EventsAfterInput`), and the turn in flight."""
    HISTORY = "history"
    """The turns still in the workflow (older ones are in the transcript store)."""
    EVENTS_SINCE = "events_since"
    """`EVENTS_AFTER` with a bare sequence id: kept for callers of an older release."""
    TURN_STATE = "turn_state"
    """Where a message stands (`TurnStateInput` -> `TurnState`): what a caller told "later" polls,
    at no cost to the agent's update budget."""
    STATE = "state"
    """The whole `AgentState`: what a fork or rewind is rebuilt from (engram/gateway/forks.py)."""


class TurnState(StrEnum):
    """Where a message stands, as the `turn_state` query tells it."""

    QUEUED = "queued"
    RUNNING = "running"
    ENDED = "ended"
    """Answered, or never to be (withdrawn, or the agent deleted)."""
    UNKNOWN = "unknown"


class Update(StrEnum):
    """The agent workflow's updates: every caller names them by these, as history does.

    A handler's name and input never change: a new input means a new name, and the old handler
    stays for the histories that recorded it and for callers of an older release.
    """

    CHAT = "chat"
    """A user message: queue it (once per message id) and answer with its turn's events."""
    WAIT_FOR_TURN = "wait_for_turn"
    """A turn's events once it has ended (`WaitTurnInput`). Followers call it with the update id
    `wait-turn-<message id>`, so all of a turn's followers share one update."""
    CONTROL_AGENT = "control_agent"
    """A `Command` (`ControlInput`): pause, resume, cancel, retry."""
    WITHDRAW_MESSAGE = "withdraw_message"
    """Nobody wants this message answered any more (`WithdrawInput`): cancel its turn, or drop it
    from the queue."""
    EDIT = "edit"
    """Change the goal, instructions, settings or memory notes (`EditInput`)."""
    DECIDE = "decide"
    """A person's answer to a tool call awaiting approval (`Decision`)."""
    SUBMIT_TOOL_RESULT = "submit_tool_result"
    """What a client's tool returned (`ClientToolResult`)."""
    START_RUN = "start_run"
    """Start an autonomous run (`RunInput`)."""
    DELEGATE = "delegate"
    """A task from another agent (`DelegateInput`): queued as `chat` queues a message, answered at
    once (`AgentAnswer`, empty until the turn has ended); the sender is signalled
    `agent_answered` when the turn ends, so it waits without holding an update or a worker."""
    FOLLOW_RUN = "follow_run"
    """A scheduled wake-up follows the run it started (`FollowRunInput`): answered at once
    (`RunEnded`, empty while the run goes on); the wake-up is signalled `run_ended` when it ends."""
    REWIND = "rewind"
    """Forget everything after a point (`RewindInput`): only while idle, and only if nothing
    happened since the gateway read the state the rewind was built from."""
    WAIT_TURN = "wait_turn"
    """`WAIT_FOR_TURN` with a bare message id: kept for old histories and callers."""
    CONTROL = "control"
    """`CONTROL_AGENT` with a bare command: kept for old histories and callers."""
    WITHDRAW = "withdraw"
    """`WITHDRAW_MESSAGE` with a bare message id: kept for old histories and callers."""


class Signal(StrEnum):
    """The agent workflow's signals: every caller names them by these, as history does."""

    DELETE = "delete"
    """End the agent: stop the turn in progress and drop queued messages."""
    RELAY_TURN = "relay_turn"
    """A client follows the turn from another gateway (`RelayInput`): stream there from now on."""
    ADD_SUB_AGENT = "add_sub_agent"
    """An agent was created as this agent's sub-agent (`SubAgentInput`): list it among the agent's
    children."""
    RELAY_TO = "relay_to"
    """`RELAY_TURN` with bare arguments: kept for old histories and callers."""
    ADD_CHILD = "add_child"
    """`ADD_SUB_AGENT` with a bare agent id: kept for old histories and callers."""
    UPGRADE = "upgrade"
    """Continue as new, on the workers' current code, once no turn or run is in progress
    (`engram agents upgrade`)."""
    AGENT_ANSWERED = "agent_answered"
    """The turn answering a task this agent delegated has ended (`AgentAnswer`)."""
    RUN_ENDED = "run_ended"
    """(To a scheduled wake-up) the run it started on the agent has ended (`RunEnded`)."""


STATUS_ATTRIBUTE = SearchAttributeKey.for_keyword("EngramStatus")
"""The agent's `AgentStatus`, kept as a search attribute so ListAgents can filter on it."""

TENANT_ATTRIBUTE = SearchAttributeKey.for_keyword("EngramTenant")
"""The tenant of the API key that created the agent (unset with auth off), so ListAgents shows a
caller only its own tenant's agents. Set once, at CreateAgent."""

MODEL_ATTRIBUTE = SearchAttributeKey.for_keyword("EngramModel")
"""The agent's model, so operators can filter agents by model in the Web UI. Set at CreateAgent."""

PARENT_ATTRIBUTE = SearchAttributeKey.for_keyword("EngramParent")
"""The id of the agent a sub-agent was created for (unset for other agents), so operators find an
agent's helpers in the Web UI (`EngramParent = '<id>'`). Set once, when the sub-agent starts."""

REPORTED_PROBLEMS = SearchAttributeKey.for_keyword_list("TemporalReportedProblems")
"""Temporal's own: set on a run whose workflow task failed or timed out several times running
(`system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute`), cleared when one succeeds.
ListAgents shows such an agent as needs_attention."""

SCHEDULED_START_ATTRIBUTE = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
"""Temporal's own: the time a schedule's firing was due, set on the workflow it starts."""

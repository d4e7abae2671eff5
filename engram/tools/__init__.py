"""Tools an agent can call: the API for writing them, and what the workflow needs to run them.

Writing a tool (a module the worker loads with `--tools my.module`)::

    from engram.tools import ToolContext, ToolError, tool

    @tool(timeout=timedelta(seconds=30), retries=1)
    async def lookup_order(order_id: str, ctx: ToolContext) -> dict[str, str]:
        '''Find an order by its id.

        Args:
            order_id: the id printed on the receipt, e.g. A-1234
        '''

Running one: every call is its own activity, of type `tool:<name>` (`tool_activity_type`), taking
a `ToolCallInput` and returning a `ToolCallOutput`, with the options `tool_activity_options`
computes from the tool's policy. `execute_tool_call` does all of that from workflow code. This
module imports nothing that is unsafe in the workflow sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

from engram.tools.registry import (
    ToolContext,
    ToolDescription,
    ToolError,
    ToolPolicy,
    ToolRegistry,
    WorkerTool,
    tool,
)
from engram.tools.scripts import ScriptCall, ScriptJournal
from engram.workflows.types import AnnounceInput

TOOL_ACTIVITY_PREFIX = "tool:"
LIST_TOOLS_ACTIVITY = "list_tools"
# The activity stops a tool at its timeout and reports that as the call's result; Temporal's own
# timeout, a little later, only catches a worker that stopped answering.
TIMEOUT_GRACE = timedelta(seconds=10)
# A worker that dies mid-call is noticed this fast (the activity heartbeats every second).
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# A fast tool's local attempt holds its agent's workflow task at most this long.
LOCAL_TIMEOUT = timedelta(seconds=5)

__all__ = [
    "HEARTBEAT_TIMEOUT",
    "LIST_TOOLS_ACTIVITY",
    "LOCAL_TIMEOUT",
    "TIMEOUT_GRACE",
    "TOOL_ACTIVITY_PREFIX",
    "ToolActivityOptions",
    "ToolCallInput",
    "ToolCallOutput",
    "ToolCatalog",
    "ToolContext",
    "ToolDescription",
    "ToolError",
    "ToolPolicy",
    "ToolRegistry",
    "WorkerTool",
    "execute_local_tool_call",
    "execute_tool_call",
    "tool",
    "tool_activity_options",
    "tool_activity_type",
]


@dataclass(kw_only=True)
class ToolCallInput:
    """One call the model made. `call_id` is the same on every attempt: the idempotency key."""

    agent_id: str
    call_id: str
    name: str
    # JSON text, as the model wrote it (not necessarily valid).
    arguments: str
    # The turn's events its gateway has not been sent (the call among them): relayed by the
    # activity before the tool runs, so the client sees the call while it runs at no extra
    # activity. A worker of an older release ignores it.
    announce: AnnounceInput | None = None
    # For a script tool (code mode, engram.tools.scripts): the calls its script made so far.
    journal: ScriptJournal | None = None


@dataclass(kw_only=True)
class ToolCallOutput:
    """What the model is told. On an error, `output` says what went wrong, for the model to act
    on, and `error_message` says the same for logs and clients."""

    output: str
    is_error: bool = False
    error_message: str = ""
    # The tool could not be reached (an MCP server down): the client is told, too.
    unavailable: bool = False
    # A script tool stopped at a call it has no answer for: the workflow makes it, then runs the
    # script again (engram.tools.scripts).
    needs_call: ScriptCall | None = None


@dataclass(kw_only=True)
class ToolCatalog:
    """Every tool a worker can run (the `list_tools` activity's result)."""

    tools: list[ToolDescription] = field(default_factory=list)
    # Sources that could not be listed (an MCP server that is down), with why.
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ToolActivityOptions:
    start_to_close_timeout: timedelta
    heartbeat_timeout: timedelta
    retry_policy: RetryPolicy


def tool_activity_type(name: str) -> str:
    """The activity type that runs tool `name`: one per tool, so the Web UI shows which ran."""
    return TOOL_ACTIVITY_PREFIX + name


def tool_activity_options(policy: ToolPolicy) -> ToolActivityOptions:
    """Timeouts and retries of a call to a tool with `policy` (deterministic: workflow-safe)."""
    return ToolActivityOptions(
        start_to_close_timeout=timedelta(seconds=policy.timeout_seconds) + TIMEOUT_GRACE,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=policy.retries + 1,
        ),
    )


async def execute_tool_call(call: ToolCallInput, policy: ToolPolicy) -> ToolCallOutput:
    """Run `call` as its activity, from workflow code; every failure becomes an error result.

    The activity itself turns bad arguments and a tool's failures into error results; what is left
    here is a worker lost on the last attempt (a timeout). Cancellation propagates: the tool has
    stopped when this raises CancelledError.
    """
    options = tool_activity_options(policy)
    try:
        output: ToolCallOutput = await workflow.execute_activity(
            tool_activity_type(call.name),
            call,
            # The Web UI's line for this activity.
            summary=f"{call.name} ({call.call_id})",
            result_type=ToolCallOutput,
            start_to_close_timeout=options.start_to_close_timeout,
            heartbeat_timeout=options.heartbeat_timeout,
            retry_policy=options.retry_policy,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return output
    except ActivityError as err:
        if is_cancelled_exception(err):
            raise
        message = f"tool {call.name} did not finish: {err.cause or err}"
        return ToolCallOutput(output=message, is_error=True, error_message=message)


async def execute_local_tool_call(call: ToolCallInput, policy: ToolPolicy) -> ToolCallOutput:
    """Run `call` once as a local activity, in the workflow's own worker; a FailureError if that
    fails (the caller falls back to `execute_tool_call`), CancelledError if cancelled.

    For read-only tools that answer in moments only: a local activity runs again if its workflow
    task does, and holds that task while it runs (a message, an approval or a cancel waits for
    it), so a tool slower than LOCAL_TIMEOUT is stopped here and left to the regular activity."""
    output: ToolCallOutput = await workflow.execute_local_activity(
        tool_activity_type(call.name),
        call,
        result_type=ToolCallOutput,
        start_to_close_timeout=min(
            LOCAL_TIMEOUT, tool_activity_options(policy).start_to_close_timeout
        ),
        retry_policy=RetryPolicy(maximum_attempts=1),
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )
    return output

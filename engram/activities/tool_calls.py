"""Tool calls as activities: one activity per call, typed `tool:<name>`, plus `list_tools`.

A dynamic activity serves every `tool:` type, so a call to `current_time` shows in the Web UI and
in history as `tool:current_time`, without registering one activity per tool (MCP servers' tools
are only known at run time). What the model did wrong (bad JSON, arguments that do not fit the
schema, an unknown tool) and what a tool reports as final (ToolError, an MCP error result) come
back at once as an error result the model can act on. Anything else a tool raises is retried
by Temporal per the tool's policy, with the same `call_id`; on the last attempt it, too, becomes
an error result, so a failing tool never fails the agent's turn. A call for a tool this worker does
not run (workers started with different tools: see engram.tools.tool_set) fails at once, not
retried, naming the tool and the worker; the workflow gives the model that as an error result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pydantic
import pydantic_core
from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from engram.activities.delegation import Delegation
from engram.observability import content_logs, metrics
from engram.observability.metrics import ToolOutcome
from engram.tools import (
    LIST_TOOLS_ACTIVITY,
    TIMEOUT_GRACE,
    TOOL_ACTIVITY_PREFIX,
    ToolCallInput,
    ToolCallOutput,
    ToolCatalog,
    ToolContext,
    ToolError,
    ToolPolicy,
    ToolRegistry,
    WorkerTool,
)
from engram.tools.agents import (
    DELEGATION_RETRIES,
    DELEGATION_TIMEOUT_SECONDS,
    is_delegation,
    referenced_agent,
)
from engram.tools.catalog import require_confirmation
from engram.tools.mcp_tools import McpServers, McpToolUnknown, McpUnavailable
from engram.tools.scripts import NeedsCall
from engram.tools.tool_set import fingerprint, worker_identity
from engram.vocabulary import ToolKind
from engram.workflows.types import AnnounceInput

HEARTBEAT_EVERY = 1.0
# A tool's output goes into workflow history and the model's context: keep it to a sane size.
MAX_OUTPUT_CHARS = 64_000
DELEGATION_POLICY = ToolPolicy(
    timeout_seconds=DELEGATION_TIMEOUT_SECONDS, retries=DELEGATION_RETRIES
)


class _Refused(Exception):
    """A call that cannot succeed as made: answered at once, not retried."""


class ToolActivities:
    def __init__(
        self,
        registry: ToolRegistry,
        mcp_servers: McpServers | None = None,
        delegation: Delegation | None = None,
    ) -> None:
        self.registry = registry
        self.mcp = mcp_servers or McpServers()
        # Calls answered by other agents (`agent_<id>`, `create_helper`); they need the worker's
        # Temporal client, so the worker sets this (engram.worker.build_worker).
        self.delegation = delegation
        # Tool names (or globs) the operator requires a person to confirm (--require-confirmation).
        self.require_confirmation: tuple[str, ...] = ()
        # Relays a call's announcement to its gateway (the worker sets it: LLMActivities').
        self.announce: Callable[[AnnounceInput], Awaitable[None]] | None = None

    @property
    def tool_set(self) -> str:
        """The fingerprint of the tools this worker runs (engram.tools.tool_set)."""
        return fingerprint(self.registry.describe(), self.mcp.servers.values())

    @property
    def identity(self) -> str:
        """The worker's Temporal identity: `pid@host tools:<tool set>`."""
        return worker_identity(self.tool_set)

    async def _announce(self, announcement: AnnounceInput) -> None:
        """Show the client the call before the tool runs; best effort, as all relaying is (the
        turn's record has the call whether or not this reaches the gateway)."""
        if self.announce is None:
            return
        try:
            await self.announce(announcement)
        except Exception:
            activity.logger.warning("could not announce the events of %s", announcement.agent_id)

    @activity.defn(dynamic=True)
    async def call_tool(self, args: Sequence[RawValue]) -> ToolCallOutput:
        name = activity.info().activity_type.removeprefix(TOOL_ACTIVITY_PREFIX)
        # Counted under its name only if it is a tool here: a model's inventions are unbounded,
        # and so are agents' ids.
        known = self.registry.get(name) is not None or self.mcp.owner(name) is not None
        tool = name if known else metrics.UNKNOWN_TOOL
        if self.delegation is not None and is_delegation(name):
            tool = ToolKind.AGENT if referenced_agent(name) else name
        try:
            output = await self._call_tool(args)
        except asyncio.CancelledError:
            metrics.tool_call(tool, ToolOutcome.CANCELLED)
            raise
        except Exception as err:
            final = isinstance(err, ApplicationError) and err.non_retryable
            metrics.tool_call(tool, ToolOutcome.FAILED if final else ToolOutcome.RETRYING)
            raise
        metrics.tool_call(tool, ToolOutcome.ERROR if output.is_error else ToolOutcome.OK)
        return output

    async def _call_tool(self, args: Sequence[RawValue]) -> ToolCallOutput:
        info = activity.info()
        if not info.activity_type.startswith(TOOL_ACTIVITY_PREFIX):
            raise ApplicationError(
                f"no activity {info.activity_type!r} on this worker", non_retryable=True
            )
        if len(args) != 1:
            raise ApplicationError("a tool activity takes one ToolCallInput", non_retryable=True)
        call = activity.payload_converter().from_payload(args[0].payload, ToolCallInput)
        if call.announce is not None and info.attempt == 1:
            await self._announce(call.announce)
        name = info.activity_type.removeprefix(TOOL_ACTIVITY_PREFIX)
        context = ToolContext(
            call_id=call.call_id,
            agent_id=call.agent_id,
            attempt=info.attempt,
            previous_details=info.heartbeat_details[0] if info.heartbeat_details else None,
            journal=call.journal,
        )
        try:
            if call.name != name:
                raise _Refused(f"activity {info.activity_type} was asked to run {call.name!r}")
            arguments = _parse_arguments(name, call.arguments)
            if self.delegation is not None and is_delegation(name):
                run = self._delegate(self.delegation, call, arguments)
                return await self._attempt(call, DELEGATION_POLICY, context, run)
            worker_tool = self.registry.get(name)
            if worker_tool is not None:
                run = self._run_worker_tool(worker_tool, arguments, context)
                return await self._attempt(call, worker_tool.policy, context, run)
            if self.mcp.owner(name) is not None:
                run = self._run_mcp(call, arguments)
                return await self._attempt(call, self.mcp.policy, context, run)
            known = ", ".join(self.registry.names() + sorted(self.mcp.servers)) or "none"
            # Not the model's mistake (the workflow only schedules the agent's tools): this
            # worker runs other tools than the one that offered it. Another attempt could land
            # here again; the model is told now and the turn goes on.
            raise ApplicationError(
                f"unknown tool {name!r} on worker {self.identity}, which runs: {known}. Every "
                "worker must run the same tools (--tools, --mcp)",
                type="ToolNotOnWorker",
                non_retryable=True,
            )
        except (_Refused, ToolError, McpToolUnknown) as err:
            return _error(str(err))
        except NeedsCall as needs:
            return ToolCallOutput(output="", needs_call=needs.call)

    @activity.defn(name=LIST_TOOLS_ACTIVITY)
    async def list_tools(self) -> ToolCatalog:
        """Every tool this worker can run: its own, then each MCP server's."""
        listing = await self.mcp.list_tools()
        catalog = ToolCatalog(
            tools=self.registry.describe() + listing.tools, problems=listing.problems
        )
        return require_confirmation(catalog, self.require_confirmation)

    async def _attempt(
        self,
        call: ToolCallInput,
        policy: ToolPolicy,
        context: ToolContext,
        run: Awaitable[ToolCallOutput],
    ) -> ToolCallOutput:
        """Run one attempt within the tool's timeout, heartbeating; decide retry or error result."""
        info = activity.info()
        timeout = _timeout(info.start_to_close_timeout, policy)
        keep_alive = asyncio.create_task(_keep_alive(context))
        deadline = asyncio.timeout(timeout)
        unavailable = False
        try:
            async with deadline:
                return await run
        except (_Refused, ToolError, McpToolUnknown, NeedsCall):
            raise
        except TimeoutError as err:
            failure = (
                f"tool {call.name} timed out after {timeout:g} s"
                if deadline.expired()
                else f"tool {call.name} failed: TimeoutError: {err}"
            )
        except McpUnavailable as err:
            failure, unavailable = str(err), True
        except Exception as err:
            failure = f"tool {call.name} failed: {type(err).__name__}: {err}"
        finally:
            keep_alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep_alive
        attempts = _max_attempts(info.retry_policy, policy)
        logged = content_logs.withheld(failure, f"tool {call.name} failed")
        # A local attempt (a fast tool) is never the last: a regular activity follows it.
        if attempts == 0 or info.attempt < attempts or info.is_local:
            activity.logger.warning("%s (attempt %d, will retry)", logged, info.attempt)
            if not info.is_local:
                # The tool's last progress, for the next attempt's ToolContext.previous_details.
                activity.heartbeat(*context.latest_details())
            raise ApplicationError(failure, type="ToolFailed")
        activity.logger.warning("%s (attempt %d, the last)", logged, info.attempt)
        return _error(
            failure if info.attempt == 1 else f"{failure} (after {info.attempt} attempts)",
            unavailable=unavailable,
        )

    async def _run_worker_tool(
        self, worker_tool: WorkerTool, arguments: dict[str, Any], context: ToolContext
    ) -> ToolCallOutput:
        try:
            kwargs = worker_tool.bind(arguments, context)
        except pydantic.ValidationError as err:
            raise _Refused(_explain(worker_tool.name, err)) from None
        if worker_tool.is_async:
            result = await worker_tool.run(kwargs)
        else:
            # A sync tool runs in a thread; cancelling the activity cannot stop it, only abandon it.
            result = await asyncio.to_thread(worker_tool.run, kwargs)
        return ToolCallOutput(output=_as_text(result))

    async def _delegate(
        self, delegation: Delegation, call: ToolCallInput, arguments: dict[str, Any]
    ) -> ToolCallOutput:
        result = await delegation.run(call, arguments)
        result.output = _cap(result.output)
        return result

    async def _run_mcp(self, call: ToolCallInput, arguments: dict[str, Any]) -> ToolCallOutput:
        result = await self.mcp.call(
            call.name, arguments, call_id=call.call_id, agent_id=call.agent_id
        )
        text = _cap(result.text)
        if result.is_error:
            return _error(text or f"tool {call.name} reported an error")
        return ToolCallOutput(output=text)


async def _keep_alive(context: ToolContext) -> None:
    # Every second, whatever the tool does: a lost worker is noticed within the heartbeat
    # timeout, and a cancel request reaches the activity (it arrives with heartbeats). A local
    # activity (a fast tool) has no heartbeat: it runs within its workflow task.
    if activity.info().is_local:
        return
    while True:
        activity.heartbeat(*context.latest_details())
        await asyncio.sleep(HEARTBEAT_EVERY)


def _parse_arguments(name: str, text: str) -> dict[str, Any]:
    try:
        arguments = json.loads(text or "{}")
    except json.JSONDecodeError as err:
        raise _Refused(
            f"arguments for {name} are not valid JSON ({err}); send one JSON object"
        ) from None
    except RecursionError:
        raise _Refused(
            f"arguments for {name} nest too deeply; send a flatter JSON object"
        ) from None
    if not isinstance(arguments, dict):
        raise _Refused(
            f"arguments for {name} must be a JSON object, not {type(arguments).__name__}"
        )
    return arguments


def _explain(name: str, err: pydantic.ValidationError) -> str:
    problems = []
    for problem in err.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "arguments"
        given = (
            ""
            if problem["type"] == "missing"
            else f" (got {json.dumps(problem['input'], default=str)[:80]})"
        )
        problems.append(f"{where}: {problem['msg']}{given}")
    return f"invalid arguments for {name}: {'; '.join(problems)}"


def _timeout(start_to_close: timedelta | None, policy: ToolPolicy) -> float:
    """The workflow's timeout decides (see tool_activity_options); the tool's own if it set none."""
    if start_to_close is not None and start_to_close > TIMEOUT_GRACE:
        return (start_to_close - TIMEOUT_GRACE).total_seconds()
    return policy.timeout_seconds


def _max_attempts(retry_policy: Any, policy: ToolPolicy) -> int:
    """The workflow's retry policy decides; the tool's own policy if it set none."""
    if retry_policy is not None:
        return int(retry_policy.maximum_attempts)
    return policy.retries + 1


def _as_text(result: Any) -> str:
    if result is None:
        return ""
    if isinstance(result, str):
        return _cap(result)
    return _cap(pydantic_core.to_json(result, fallback=str).decode())


def _cap(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    return (
        text[:MAX_OUTPUT_CHARS] + f"\n[output cut at {MAX_OUTPUT_CHARS} of {len(text)} characters]"
    )


def _error(message: str, unavailable: bool = False) -> ToolCallOutput:
    return ToolCallOutput(
        output=message, is_error=True, error_message=message, unavailable=unavailable
    )

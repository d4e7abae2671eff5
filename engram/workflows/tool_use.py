"""Tool use inside a turn: the model's calls carried out one by one, in the order it made them.

A call goes through the same steps whatever runs it: its `tool_call` event; the approval policy
(run, refuse, or ask a person and wait, durably, for as long as it takes or until its deadline);
then `remember` inside the workflow, `recall` as a search activity, a worker or MCP tool as its
own activity, or a client tool by waiting for the client's result; last its `tool_result` event.
Waiting holds no worker: the workflow sleeps on a condition and may be evicted, and a decision
arriving a week later, after every process restarted, resumes it here. What already ran is in
history and never runs again. Everything here is workflow code: deterministic, with time from
`workflow.now()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)

from engram.tools import (
    ToolCallInput,
    ToolCallOutput,
    ToolPolicy,
    approval_policy,
    execute_local_tool_call,
    execute_tool_call,
)
from engram.tools.scripts import SCRIPT_TOOL, STEP_OUTPUT_CHARS, ScriptJournal, ScriptStep
from engram.vocabulary import ApprovalPolicy, ErrorType, EventKind, Notice, ToolKind, Waiting
from engram.workflows import autonomy, memory, patches, recall
from engram.workflows.agent_waits import Calls
from engram.workflows.events import EventLog
from engram.workflows.model_json import NotAnObject, UnusableJSON, parse_object
from engram.workflows.types import (
    AgentState,
    AgentTool,
    AnnounceInput,
    ClientToolResult,
    Decision,
    Event,
    PendingCall,
    RunState,
    ToolCall,
)

# What the model is shown of one tool's output; the transcript keeps all of it.
PROMPT_OUTPUT_CHARS = 16 * 1024


class TurnCancelled(Exception):
    """The turn was cancelled (or the agent deleted) while a tool ran or a call waited."""


@dataclass
class Outcome:
    output: str
    is_error: bool = False


@dataclass
class TurnHooks:
    """What tool use needs from the turn around it."""

    # Send the turn's events recorded so far to the client's gateway now (best effort).
    announce: Callable[[], Awaitable[None]]
    # Those events, for a tool activity to send before its tool runs; taking them counts them
    # as sent.
    take_announcement: Callable[[], AnnounceInput]
    # The turn was cancelled, or the agent is being deleted.
    stopping: Callable[[], bool]
    # A call started or stopped waiting for a person or a client.
    waiting_changed: Callable[[], None]


class ToolUse:
    def __init__(self, state: AgentState, log: EventLog) -> None:
        self.state = state
        self.log = log
        # The tool activity in progress, so cancel can reach it.
        self.running: asyncio.Task[ToolCallOutput] | None = None
        # A run's `finish` or `ask_user` in this step: the run stops after the step's calls.
        self.finished: autonomy.Finished | None = None
        # Calls to other agents waiting for their answers.
        self.agents = Calls()

    def offered(self, autonomous: bool = False) -> list[dict[str, Any]]:
        """The function tools the model is offered: `remember`, `recall` (unless turned off), a
        run's own, the agent's."""
        own = autonomy.TOOLS if autonomous else []
        engram = [memory.REMEMBER_TOOL]
        if recall.offered(self.state):
            engram.append(recall.RECALL_TOOL)
        return [*engram, *own, *(t.function for t in self.state.tools)]

    def take_finished(self) -> autonomy.Finished | None:
        finished, self.finished = self.finished, None
        return finished

    def cancel(self) -> None:
        if self.running is not None:
            self.running.cancel()

    async def run_calls(
        self, calls: list[ToolCall], message_id: str, hooks: TurnHooks
    ) -> tuple[list[ToolCall], list[str], list[Event]]:
        """Carry out the model's calls: the calls as recorded, what the model is shown of each,
        and the events recorded.

        Each call is renamed `call_<seq>` after its `tool_call` event's sequence id: a model's own
        ids (`call_0`) repeat from turn to turn, and the id is what approvals name and what a tool
        gets as its idempotency key. Raises TurnCancelled if the turn is cancelled meanwhile: the
        calls already made stay recorded, the rest are not made.
        """
        first = self.state.next_seq
        made: list[ToolCall] = []
        outputs: list[str] = []
        for model_call in calls:
            call = ToolCall(f"call_{self.state.next_seq}", model_call.name, model_call.arguments)
            made.append(call)
            self.state.tool_calls += 1
            self.log.tool_call(call, message_id=message_id, now=_now())
            outcome = await self._carry_out(call, message_id, hooks, self._turn_start(message_id))
            self.log.tool_result(
                call.call_id,
                outcome.output,
                is_error=outcome.is_error,
                message_id=message_id,
                now=_now(),
            )
            if self.state.spec.settings.enable_observation:
                self.log.emit(
                    kind=EventKind.OBSERVATION,
                    text=observation(call, outcome),
                    message_id=message_id,
                    now=_now(),
                )
            outputs.append(_for_prompt(outcome.output))
        return made, outputs, self.log.between(first, self.state.next_seq - 1)

    def _turn_start(self, message_id: str) -> int:
        """The first seq of the turn in progress: recall searches what came before it."""
        turn = next((t for t in reversed(self.state.turns) if t.message_id == message_id), None)
        return turn.first_seq if turn is not None else self.state.next_seq

    async def _carry_out(
        self, call: ToolCall, message_id: str, hooks: TurnHooks, first_seq: int
    ) -> Outcome:
        if call.name == memory.REMEMBER:
            try:
                return Outcome(memory.apply(self.state.notes, call, _now()))
            except memory.NoteError as err:
                return Outcome(f"error: {err}", is_error=True)
        if call.name == recall.RECALL and recall.offered(self.state):
            try:
                return Outcome(await recall.recall(self.state, self.log, call, first_seq))
            except recall.RecallError as err:
                return Outcome(f"error: {err}", is_error=True)
        run = self.state.run
        if run is not None and call.name in autonomy.NAMES:
            return await self._autonomy(call, run, message_id, hooks)
        tool = next((t for t in self.state.tools if t.name == call.name), None)
        if tool is None:
            names = ", ".join([memory.REMEMBER, *(t.name for t in self.state.tools)])
            return Outcome(f"error: unknown tool {call.name!r}; the tools are {names}", True)

        arguments = call.arguments
        policy = self.policy(tool)
        if policy == ApprovalPolicy.NEVER:
            return Outcome(f"error: tool {tool.name!r} is not allowed for this agent", True)
        if policy == ApprovalPolicy.ASK:
            decision = await self._approval(call, tool, message_id, hooks)
            if decision is None:
                self._note(Notice.DENIED, f"call {call.call_id} denied: timed out", message_id)
                return Outcome("error: denied: timed out waiting for approval", True)
            if decision.stop_asking and not self._mandatory(tool):
                self.state.approvals[tool.name] = ApprovalPolicy.ALWAYS
            if decision.response:
                who = _by(decision)
                self._note(Notice.RESPONDED, f"call {call.call_id} answered{who}", message_id)
                return Outcome(decision.response)
            if not decision.approved:
                reason = decision.reason or "no reason given"
                self._note(
                    Notice.DENIED,
                    f"call {call.call_id} denied{_by(decision)}: {reason}",
                    message_id,
                )
                return Outcome(f"error: denied by the user: {reason}", True)
            arguments = decision.edited_arguments or arguments
            edited = f" with input {arguments}" if decision.edited_arguments else ""
            self._note(
                Notice.APPROVED, f"call {call.call_id} approved{_by(decision)}{edited}", message_id
            )

        if tool.kind == ToolKind.CLIENT:
            result = await self._client_result(call, arguments, message_id, hooks)
            if result.is_error:
                return Outcome(f"error: {result.error_message or result.output}", True)
            return Outcome(result.output)
        return await self._run_activity(call, tool, arguments, message_id, hooks)

    async def _autonomy(
        self, call: ToolCall, run: RunState, message_id: str, hooks: TurnHooks
    ) -> Outcome:
        if self.finished is not None:
            return Outcome("error: not done: the run is already over", True)
        try:
            if call.name == autonomy.WAIT:
                await hooks.announce()
                woke = await autonomy.sleep(
                    call, run, self.log, message_id, hooks.stopping, hooks.waiting_changed
                )
                if hooks.stopping():
                    raise TurnCancelled
                return Outcome(woke)
            self.finished = autonomy.finished(call)
        except autonomy.ArgumentError as err:
            return Outcome(f"error: {err}", True)
        if self.finished.asks_user:
            return Outcome("asked; the user's answer will be this call's result")
        return Outcome("finished")

    # --- answers from people and clients (the decide and submit_tool_result updates) -------

    def check_decision(self, decision: Decision) -> None:
        """Refuse (FAILED_PRECONDITION) a decision for a call not waiting for one, or another
        decision for a decided call; ValueError for unusable edited input."""
        if self._answered(self.state.decisions, decision, "was already decided"):
            return
        self._refuse_unless_waiting(decision.call_id, Waiting.APPROVAL)
        if decision.edited_arguments and (problem := check_arguments(decision.edited_arguments)):
            raise ValueError(problem)

    def take_decision(self, decision: Decision) -> bool:
        """Record a checked decision; False for a resend (nothing changes)."""
        return _keep_newest(self.state.decisions, decision.call_id, decision)

    def check_result(self, result: ClientToolResult) -> None:
        if self._answered(self.state.client_results, result, "already has a result"):
            return
        self._refuse_unless_waiting(result.call_id, Waiting.RESULT)

    def take_result(self, result: ClientToolResult) -> bool:
        return _keep_newest(self.state.client_results, result.call_id, result)

    @staticmethod
    def _answered(
        answers: dict[str, Any], answer: Decision | ClientToolResult, refusal: str
    ) -> bool:
        """The call was answered before: True for the same answer again, a refusal for another."""
        earlier = answers.get(answer.call_id)
        if earlier is None:
            return False
        if earlier != answer:
            raise ApplicationError(
                f"call {answer.call_id} {refusal}", type=ErrorType.FAILED_PRECONDITION
            )
        return True

    def _refuse_unless_waiting(self, call_id: str, waiting_for: Waiting) -> None:
        pending = next((p for p in self.state.pending if p.call_id == call_id), None)
        if pending is None or pending.waiting_for != waiting_for:
            what = "approval" if waiting_for == Waiting.APPROVAL else "a client's result"
            raise ApplicationError(
                f"no tool call {call_id!r} is waiting for {what}",
                type=ErrorType.FAILED_PRECONDITION,
            )

    def policy(self, tool: AgentTool) -> str:
        """The tool's approval policy on this agent; a confirmation its operator requires stays."""
        chosen = self._chosen_policy(tool)
        if chosen == ApprovalPolicy.ALWAYS and self._mandatory(tool):
            return ApprovalPolicy.ASK
        return chosen

    @staticmethod
    def _mandatory(tool: AgentTool) -> bool:
        # Only agents created since tools carry the flag can take the new path: older ones'
        # tools never have it, so their histories replay as they ran.
        return approval_policy.mandatory(tool) and patches.check(patches.MANDATORY_APPROVALS)

    def _chosen_policy(self, tool: AgentTool) -> str:
        """The policy the agent's settings give, changes made since creation first."""
        if tool.name in self.state.approvals:
            return self.state.approvals[tool.name]
        if tool.approval:
            return tool.approval
        if tool.read_only and self.state.auto_approve_read_only:
            return ApprovalPolicy.ALWAYS
        return ApprovalPolicy.ASK if tool.requires_confirmation else ApprovalPolicy.ALWAYS

    async def _approval(
        self, call: ToolCall, tool: AgentTool, message_id: str, hooks: TurnHooks
    ) -> Decision | None:
        """Wait for a person's decision on `call`; None if its deadline passed first."""
        now = _now()
        deadline = now + tool.approval_timeout_seconds if tool.approval_timeout_seconds else 0.0
        self._note(
            Notice.AWAITING_APPROVAL,
            f"{tool.name} wants to run with {call.arguments}: approve, deny or respond to call "
            f"{call.call_id}",
            message_id,
        )
        self._wait_for(call, message_id, Waiting.APPROVAL, deadline)
        hooks.waiting_changed()
        await hooks.announce()
        timeout = timedelta(seconds=tool.approval_timeout_seconds) if deadline else None
        try:
            await workflow.wait_condition(
                lambda: call.call_id in self.state.decisions or hooks.stopping(), timeout=timeout
            )
        except TimeoutError:
            pass
        finally:
            self._done_waiting(call.call_id)
            hooks.waiting_changed()
        if hooks.stopping():
            raise TurnCancelled
        return self.state.decisions.get(call.call_id)

    async def _client_result(
        self, call: ToolCall, arguments: str, message_id: str, hooks: TurnHooks
    ) -> ClientToolResult:
        self._note(
            Notice.AWAITING_RESULT,
            f"waiting for the client to run {call.name} for call {call.call_id}",
            message_id,
        )
        self._wait_for(call, message_id, Waiting.RESULT, 0.0, arguments)
        hooks.waiting_changed()
        await hooks.announce()
        try:
            await workflow.wait_condition(
                lambda: call.call_id in self.state.client_results or hooks.stopping()
            )
        finally:
            self._done_waiting(call.call_id)
            hooks.waiting_changed()
        if hooks.stopping():
            raise TurnCancelled
        return self.state.client_results[call.call_id]

    async def _run_activity(
        self, call: ToolCall, tool: AgentTool, arguments: str, message_id: str, hooks: TurnHooks
    ) -> Outcome:
        if (
            tool.name == SCRIPT_TOOL
            and tool.kind == ToolKind.WORKER
            and patches.check(patches.CODE_MODE)
        ):
            return await self._run_script(call, tool, arguments, message_id, hooks)
        result = await self._activity(call, tool, arguments, message_id, hooks)
        return Outcome(result.output, result.is_error)

    async def _run_script(
        self, call: ToolCall, tool: AgentTool, arguments: str, message_id: str, hooks: TurnHooks
    ) -> Outcome:
        """Code mode (engram.tools.scripts): run the script; make each call it stops at as a step
        of its own, as if the model had made it; run it again with the results, until it ends."""
        journal = ScriptJournal()
        while True:
            result = await self._activity(call, tool, arguments, message_id, hooks, journal)
            needs = result.needs_call
            if needs is None:
                return Outcome(result.output, result.is_error)
            journal.state = needs.state
            inner = ToolCall(f"call_{self.state.next_seq}", needs.name, needs.arguments)
            self.state.tool_calls += 1
            self.log.tool_call(inner, message_id=message_id, now=_now())
            if needs.name == SCRIPT_TOOL or all(t.name != needs.name for t in self.state.tools):
                names = ", ".join(t.name for t in self.state.tools if t.name != SCRIPT_TOOL)
                outcome = Outcome(
                    f"error: no tool {needs.name!r} for scripts; they are {names}", True
                )
            else:
                outcome = await self._carry_out(
                    inner, message_id, hooks, self._turn_start(message_id)
                )
            self.log.tool_result(
                inner.call_id,
                outcome.output,
                is_error=outcome.is_error,
                message_id=message_id,
                now=_now(),
            )
            journal.steps.append(
                ScriptStep(
                    name=needs.name,
                    arguments=needs.arguments,
                    output=outcome.output[:STEP_OUTPUT_CHARS],
                    is_error=outcome.is_error,
                )
            )

    async def _activity(
        self,
        call: ToolCall,
        tool: AgentTool,
        arguments: str,
        message_id: str,
        hooks: TurnHooks,
        journal: ScriptJournal | None = None,
    ) -> ToolCallOutput:
        # The client sees the call while the tool runs, not after: the tool's activity sends it
        # first (it too starts only once this point is recorded), or, for another agent's call,
        # which has no such activity, an announcement does.
        announcement = None
        if tool.kind != ToolKind.AGENT and patches.check(patches.ANNOUNCE_WITH_TOOL):
            announcement = hooks.take_announcement()
        else:
            await hooks.announce()
            if hooks.stopping() and patches.check(patches.CANCEL_BEFORE_TOOL_STARTS):
                # Cancelled while the call was being announced: the tool never starts.
                raise TurnCancelled
        call_input = ToolCallInput(
            agent_id=self.state.spec.agent_id,
            call_id=call.call_id,
            name=tool.name,
            arguments=arguments,
            announce=announcement if announcement and announcement.events else None,
            journal=journal,
        )
        if tool.kind == ToolKind.AGENT and patches.check(patches.WAIT_IN_WORKFLOW):
            answer = await self.agents.wait(call_input, tool.timeout_seconds, hooks.stopping)
            if answer is None:
                raise TurnCancelled
            return ToolCallOutput(output=answer.output, is_error=answer.is_error)
        self.running = asyncio.ensure_future(self._run_tool(tool, call_input))
        try:
            result = await self.running
        except asyncio.CancelledError:
            raise TurnCancelled from None
        except ActivityError as err:
            # A tool stopped by a cancel ends the turn. Before this patch it failed the workflow:
            # histories that took that path replay as they were.
            if is_cancelled_exception(err) and patches.check(patches.TOOL_CANCEL_ENDS_TURN):
                raise TurnCancelled from None
            raise
        finally:
            self.running = None
        if result.unavailable:
            self._note(Notice.TOOL_UNAVAILABLE, result.error_message, message_id)
        return result

    @staticmethod
    async def _run_tool(tool: AgentTool, call: ToolCallInput) -> ToolCallOutput:
        policy = ToolPolicy(timeout_seconds=tool.timeout_seconds, retries=tool.retries)
        local = tool.kind == ToolKind.WORKER and tool.fast and tool.read_only
        if local and patches.check(patches.LOCAL_FAST_TOOLS):
            # In this worker, without a round trip through the server; it is read-only, so
            # running it again as a regular activity after a failure here is safe.
            try:
                return await execute_local_tool_call(call, policy)
            except FailureError as err:  # a local activity's failure may come unwrapped
                if is_cancelled_exception(err):
                    raise asyncio.CancelledError from err
                workflow.logger.warning("%s failed here (%s): run as an activity", tool.name, err)
        return await execute_tool_call(call, policy)

    # --- bookkeeping ----------------------------------------------------------------------

    def _wait_for(
        self,
        call: ToolCall,
        message_id: str,
        waiting_for: Waiting,
        deadline: float,
        arguments: str | None = None,
    ) -> None:
        self.state.pending.append(
            PendingCall(
                call_id=call.call_id,
                message_id=message_id,
                tool=call.name,
                arguments=call.arguments if arguments is None else arguments,
                waiting_for=waiting_for,
                since=_now(),
                deadline=deadline,
            )
        )

    def _done_waiting(self, call_id: str) -> None:
        self.state.pending = [p for p in self.state.pending if p.call_id != call_id]

    def _note(self, status: Notice, text: str, message_id: str) -> None:
        self.log.notice(status, text, now=_now(), message_id=message_id)

    def end_turn(self) -> None:
        """Forget the turn's decisions and results: call ids are only unique within a turn."""
        self.state.pending.clear()
        self.state.decisions.clear()
        self.state.client_results.clear()


OBSERVATION_CHARS = 200


def observation(call: ToolCall, outcome: Outcome) -> str:
    """What the agent learned from a call, in a line: the tool and the start of its answer."""
    first = outcome.output.strip().splitlines()[0] if outcome.output.strip() else "(nothing)"
    if len(first) > OBSERVATION_CHARS:
        first = first[:OBSERVATION_CHARS] + "…"
    verb = "failed" if outcome.is_error else "returned"
    return f"{call.name} {verb}: {first}"


# Decisions and client results kept for idempotent resends.
ANSWERS_KEPT = 64


def _keep_newest(answers: dict[str, Any], call_id: str, answer: Any) -> bool:
    """Record an answer unless there is one; forget the oldest past ANSWERS_KEPT (dicts keep
    insertion order). Whether it was new."""
    if call_id in answers:
        return False
    answers[call_id] = answer
    for old in list(answers)[: max(0, len(answers) - ANSWERS_KEPT)]:
        del answers[old]
    return True


def check_arguments(arguments: str) -> str | None:
    """Why edited input is unusable (not a JSON object within the budget), or None."""
    try:
        parse_object(arguments)
    except NotAnObject:
        return "edited input must be a JSON object"
    except UnusableJSON as err:
        return f"edited input is {err}"
    return None


def _for_prompt(output: str) -> str:
    if len(output) <= PROMPT_OUTPUT_CHARS:
        return output
    cut = len(output) - PROMPT_OUTPUT_CHARS
    return f"{output[:PROMPT_OUTPUT_CHARS]}\n[... {cut} more characters not shown]"


def _by(decision: Decision) -> str:
    return f" by {decision.decided_by}" if decision.decided_by else ""


def _now() -> float:
    return workflow.now().timestamp()

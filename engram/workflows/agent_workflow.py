"""The agent: one long-running workflow whose state is the agent's whole memory.

Chat messages arrive as updates and are answered one turn at a time, in arrival order. Each turn
runs the LLM activity, which streams tokens to the gateway directly; only the finished turn is
recorded here, so history grows by a handful of events per turn, not per token.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

# Activities run outside the sandbox; the workflow's own modules below are imported into it, so
# a sandbox that does not pass them through (the replay and in-process tests') checks them too.
with workflow.unsafe.imports_passed_through():
    from engram.activities.archive import ArchiveActivities
from engram.vocabulary import (
    AgentStatus,
    Command,
    ErrorType,
    EventKind,
    Notice,
    Query,
    Signal,
    TurnOutcome,
    TurnState,
    Update,
)
from engram.workflows import (
    autonomy,
    double_texting,
    edits,
    fork,
    next_run,
    patches,
    quota_wait,
    status_filing,
    ui,
)
from engram.workflows.agent_waits import Senders
from engram.workflows.announce import announce
from engram.workflows.describe import agent_info, link_child
from engram.workflows.events import EventLog
from engram.workflows.ledger import NothingToRetry, TurnLedger
from engram.workflows.llm_outcome import cancelled
from engram.workflows.maintenance import ARCHIVE_RETRY, Maintenance
from engram.workflows.model_calls import ModelCalls
from engram.workflows.prompt import build_prompt, context_budget
from engram.workflows.tool_use import ToolUse, TurnCancelled, TurnHooks
from engram.workflows.turn import NextCall, TurnInProgress
from engram.workflows.types import (
    AgentAnswer,
    AgentInfo,
    AgentState,
    AnnounceInput,
    ChatInput,
    ClientToolResult,
    ControlInput,
    Decision,
    DelegateInput,
    EditInput,
    EventsAfterInput,
    EventsPage,
    FollowRunInput,
    HistoryPage,
    LLMRequest,
    LLMResult,
    RelayInput,
    RunEnded,
    RunInput,
    StreamPiece,
    SubAgentInput,
    Turn,
    TurnResult,
    TurnStateInput,
    WaitTurnInput,
    WithdrawInput,
)
from engram.workflows.waiters import Waiters


@workflow.defn(name="AgentWorkflow")
class AgentWorkflow:
    @workflow.init
    def __init__(self, state: AgentState) -> None:
        self.state = state
        self.ledger = TurnLedger(state)
        self.log = EventLog(state)
        self.upkeep = Maintenance(state, self.ledger, self.log)
        self.tool_use = ToolUse(state, self.log)
        self.turn = TurnInProgress(state, self.log)
        # A run is about to continue as new: handlers waiting on a turn return "continued".
        self.handing_over = False
        self.waiters = Waiters()
        # An upgrade was asked for: continue as new once idle between turns.
        self.upgrading = False
        # Agents waiting on this one's turns, told when they end.
        self.senders = Senders(state, self.ledger)
        # A rewind waiting for the loop to be between turns, and how it went ("" done).
        self.rewinding: fork.RewindInput | None = None
        self.rewind_refused = ""
        self.calls = ModelCalls(
            state,
            self.turn,
            self.ledger,
            status_changed=self._status_changed,
            announce=self._announce,
        )

    @workflow.run
    async def run(self, state: AgentState) -> str:
        ledger = self.ledger
        while True:
            await self.senders.tell()
            await workflow.wait_condition(
                lambda: (
                    ledger.deleting
                    or self.rewinding is not None
                    or self._run_may_step()
                    or self._ready()
                    or next_run.history_is_long(self.state)
                    or next_run.upgrade_due(self.upgrading, self.turn.active, self.state.run)
                    or self.senders.followers_due()
                )
            )
            if ledger.deleting:
                break
            if self.rewinding is not None:
                await self._rewind(self.rewinding)
                continue
            if self._run_may_step():
                turn = self.turn.current
                assert turn is not None
                if not await self._step(turn):
                    await self.upkeep.between_turns()
                    continue
                # A run's turn can outlast any number of turns: its events are archived as it goes,
                # and it continues as new between two steps, when nobody waits on a handler.
                if self.upkeep.events_pile_up():
                    await self.upkeep.archive_events()
                if next_run.history_is_long(self.state) and await self._handed_over():
                    workflow.continue_as_new(self.state)
                continue
            if self._ready():
                await self._run_turn()
                await self.senders.tell()
                # About to continue-as-new? Then no await first: a client sending its next message
                # right away would keep the run busy, and history growing, indefinitely.
                if self.state.queue or not next_run.history_is_long(self.state):
                    await self.upkeep.between_turns()
                continue
            # Handlers still waiting can only be waiting for a turn, which needs this loop.
            await workflow.wait_condition(
                lambda: (
                    workflow.all_handlers_finished()
                    or self._ready()
                    or self._run_may_step()
                    or ledger.deleting
                    or self.rewinding is not None
                )
            )
            # No await between this check and continuing: a message arriving in between would
            # otherwise be accepted by a run that is about to end.
            if (
                workflow.all_handlers_finished()
                and not self._ready()
                and not self._run_may_step()
                and not ledger.deleting
                and self.rewinding is None
            ):
                workflow.continue_as_new(
                    self.state, initial_versioning_behavior=next_run.versioning()
                )

        ledger.drop_queue()
        await self.senders.tell()
        self._set_status(AgentStatus.DELETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return AgentStatus.DELETED

    def _ready(self) -> bool:
        """A queued message may start: none is in progress (a run takes its steps first)."""
        return not self.turn.active and self.rewinding is None and self.ledger.ready()

    async def _rewind(self, rewind: fork.RewindInput) -> None:
        """Go back to the point (here, between turns: no turn or upkeep is half done)."""
        try:
            fork.refuse_rewind(self.state, self.turn.active, rewind)
        except ValueError as err:
            self.rewind_refused = str(err)
        else:
            # The store forgets first: should this fail for good, nothing was rewound.
            await workflow.execute_activity_method(
                ArchiveActivities.forget_after,
                fork.ForgetInput(
                    agent_id=self.state.spec.agent_id,
                    after_seq=rewind.at,
                    from_turn=rewind.archived_turns,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=ARCHIVE_RETRY,
            )
            fork.apply_rewind(self.state, rewind)
            self._touch()
        self.rewinding = None

    async def _handed_over(self) -> bool:
        """(Between two steps of a run) whether it may continue as new now. Whoever waits on a
        turn is answered "continued" first and waits again on the new run: a run that a client
        follows would otherwise never continue as new."""
        if not workflow.all_handlers_finished():
            if not patches.check(patches.HAND_OVER_WAITERS):
                return False
            self.handing_over = True
            await workflow.wait_condition(workflow.all_handlers_finished)
            self.handing_over = False
        # A cancel or delete that came meanwhile is not part of the state: act on it here.
        return not self.turn.cancelling and not self.ledger.deleting

    # --- one turn, step by step ------------------------------------------------------------

    async def _run_turn(self) -> None:
        """A chat turn: steps until the model answers. A run only starts here; the loop takes
        its steps one at a time."""
        starts_run = self.ledger.next_starts_run()
        turn = self.ledger.start_next(self.state.next_seq, self._now())
        self.turn.start(turn, starts_run, self._now())
        self._status_changed()
        if not self.turn.is_run():
            while await self._step(turn):
                pass

    def _run_may_step(self) -> bool:
        return self.turn.is_run() and not self.state.paused and not self.ledger.deleting

    async def _step(self, turn: Turn) -> bool:
        """One LLM call and the tool calls it asks for; whether the turn goes on."""
        if self.turn.run_cancelled():
            self._end_turn(cancelled([]))
            return False
        if limit := self.turn.limit_reached(self._now()):
            result = await self.calls.call(
                self._request(turn, self.turn.report(limit, self._now()))
            )
            self.turn.record(result, self._now(), step=False)
            self._end_turn(result)
            return False
        # The safe point for messages that came in meanwhile: every call has its result.
        if double_texting.waiting(self.state) and patches.check(patches.DOUBLE_TEXTING):
            self.turn.take_in(self.ledger, self._now())
            self._touch()
        call = self.turn.next_call()
        result = await self.calls.call(self._request(turn, call), interruptible=True)
        if result.quota_wait:
            return await self._wait_for_quota(turn, result)
        self.turn.record(result, self._now())
        if self.turn.cut_off(result, self._now()):
            return True
        # Calls to tools that were not offered are not made: the model must answer now.
        if result.outcome != TurnOutcome.COMPLETED or not result.tool_calls or not call.offer_tools:
            self._end_turn(result)
            return False
        hooks = TurnHooks(
            announce=self._announce,
            take_announcement=self._take_announcement,
            stopping=lambda: self.turn.cancelling or self.ledger.deleting,
            waiting_changed=self._status_changed,
        )
        try:
            calls, outputs, events = await self.tool_use.run_calls(
                result.tool_calls, turn.message_id, hooks
            )
        except TurnCancelled:
            self._end_turn(cancelled([]))
            return False
        finally:
            self._touch()
        self.turn.add_round(result.reply, calls, outputs, events)
        finished = self.tool_use.take_finished()
        if finished is not None:
            self._end_turn(result, finished)
            return False
        return True

    async def _wait_for_quota(self, turn: Turn, result: LLMResult) -> bool:
        """Every model is out of quota: wait until it lifts, then the turn goes on (True), or
        it ends, cancelled meanwhile (False)."""
        if result.reply:
            # The next call answers from the start: what this one streamed is void.
            result.pieces.append(StreamPiece(kind=EventKind.RESTART, text=""))
        self.turn.record(result, self._now(), step=False)
        waited = await quota_wait.wait(
            result.quota_wait,
            self.state,
            self.log,
            turn.message_id,
            stopping=lambda: self.turn.cancelling or self.ledger.deleting,
            status_changed=self._status_changed,
            announce=self._announce,
        )
        if not waited:
            self._end_turn(cancelled([]))
        return waited

    def _request(self, turn: Turn, call: NextCall) -> LLMRequest:
        spec = self.state.spec
        failover = patches.check(patches.FAILOVER)
        return LLMRequest(
            agent_id=spec.agent_id,
            message_id=turn.message_id,
            model=spec.model,
            messages=build_prompt(
                spec,
                self.state.turns[:-1],
                call.user,
                self.state.summary,
                self.state.notes,
                self.upkeep.counter(),
                turn.attachments,
            ),
            prelude=self.turn.prelude,
            first_text_seq=self.state.next_seq,
            reply_to=turn.reply_to,
            temperature=spec.settings.temperature,
            tools=self.tool_use.offered(call.autonomous) if call.offer_tools else [],
            tool_rounds=call.rounds,
            thinking=spec.settings.enable_thinking,
            context_tokens=context_budget(spec),
            fallback_models=list(spec.settings.fallback_models) if failover else [],
            wait_for_quota=failover,
        )

    def _end_turn(self, result: LLMResult, finished: autonomy.Finished | None = None) -> None:
        held = self.turn.end(result, self._now(), finished)
        self._status_changed()
        for status, text in held:
            self._notice(status, text)

    async def _announce(self) -> None:
        """Send the turn's events so far to its gateway now (see workflows/announce.py)."""
        if await announce(self.turn.announcement()):
            self.turn.announced()

    def _take_announcement(self) -> AnnounceInput:
        announcement = self.turn.announcement()
        self.turn.announced()
        return announcement

    def _status_changed(self) -> None:
        self._set_status(ui.status(self.state, turn_in_progress=self.turn.active))

    # --- handlers: each with its validator ------------------------------------------------
    # A handler's name and input never change (history records both): a new input is a new
    # handler, and the old one stays, below, for old histories and callers of an older release.

    @workflow.update(name=Update.CHAT)
    async def chat(self, message: ChatInput) -> TurnResult:
        self._take_message(message)
        return await self._turn_result(message.message_id)

    @chat.validator
    def _validate_chat(self, message: ChatInput) -> None:
        self._refuse_if_deleting()
        if not message.message_id:
            raise ValueError("message_id is required")
        resend = self.ledger.is_known(message.message_id)
        if not message.content.strip() and not message.attachments and not resend:
            raise ValueError("content is empty")
        if not resend:
            double_texting.refuse_if_busy(self.state, busy=self.turn.active)

    @workflow.update(name=Update.DELEGATE)
    def delegate(self, task: DelegateInput) -> AgentAnswer:
        """A task from another agent: answered at once, the sender signalled when it ends."""
        self._take_message(ChatInput(task.message_id, task.content))
        return self.senders.take(task)

    @delegate.validator
    def _validate_delegate(self, task: DelegateInput) -> None:
        self._validate_chat(ChatInput(task.message_id, task.content))

    @workflow.signal(name=Signal.AGENT_ANSWERED)
    def agent_answered(self, answer: AgentAnswer) -> None:
        """The turn answering a task this agent delegated has ended."""
        self.tool_use.agents.answered(answer)

    @workflow.update(name=Update.FOLLOW_RUN)
    def follow_run(self, follow: FollowRunInput) -> RunEnded:
        """A scheduled wake-up waits on the run it started: answered at once, the wake-up
        signalled when the run ends."""
        return self.senders.follow(follow)

    @workflow.update(name=Update.WAIT_FOR_TURN)
    async def wait_for_turn(self, wait: WaitTurnInput) -> TurnResult:
        """The events of a turn once it has ended (at once if it already has)."""
        return await self._turn_result(wait.message_id)

    @wait_for_turn.validator
    def _validate_wait_for_turn(self, wait: WaitTurnInput) -> None:
        self._refuse_unknown(wait.message_id)

    @workflow.update(name=Update.WITHDRAW_MESSAGE)
    def withdraw_message(self, withdrawal: WithdrawInput) -> str:
        """The sender no longer wants this message answered."""
        return self._withdraw(withdrawal.message_id)

    @workflow.update(name=Update.CONTROL_AGENT)
    def control_agent(self, control: ControlInput) -> str:
        """pause, resume, cancel (the turn in progress) or retry (the last failed turn)."""
        return self._control(control.command)

    @control_agent.validator
    def _validate_control_agent(self, control: ControlInput) -> None:
        self._validate_command(control.command)

    @workflow.update(name=Update.EDIT)
    def edit(self, edit: EditInput) -> str:
        """Change the goal, instructions, settings or memory notes; the next turn uses them."""
        changed = edits.apply(self.state, edit, self._now())
        self.calls.budget_nudged = True
        self._notice(Notice.EDITED, edit.description or f"edited {', '.join(changed)}")
        self._touch()
        return self.state.status

    @edit.validator
    def _validate_edit(self, edit: EditInput) -> None:
        self._refuse_if_deleting()
        edits.check(self.state, edit)

    @workflow.update(name=Update.DECIDE)
    def decide(self, decision: Decision) -> str:
        """A person's answer to a tool call awaiting approval; the same answer again is a no-op."""
        if self.tool_use.take_decision(decision):
            self._touch()
        return self.state.status

    @decide.validator
    def _validate_decide(self, decision: Decision) -> None:
        self._refuse_if_deleting()
        self.tool_use.check_decision(decision)

    @workflow.update(name=Update.SUBMIT_TOOL_RESULT)
    def submit_tool_result(self, result: ClientToolResult) -> str:
        """What a client's tool returned; the same result again is a no-op."""
        if self.tool_use.take_result(result):
            self._touch()
        return self.state.status

    @submit_tool_result.validator
    def _validate_submit_tool_result(self, result: ClientToolResult) -> None:
        self._refuse_if_deleting()
        self.tool_use.check_result(result)

    @workflow.update(name=Update.START_RUN)
    def start_run(self, request: RunInput) -> str:
        """Start an autonomous run (queued behind messages already waiting)."""
        if self.ledger.enqueue(
            request.run_id, request.instructions, request.reply_to, starts_run=True
        ):
            self._touch()
        return self.state.status

    @start_run.validator
    def _validate_start_run(self, request: RunInput) -> None:
        self._refuse_if_deleting()
        if not request.run_id:
            raise ValueError("run_id is required")
        if self.ledger.is_known(request.run_id):
            return  # a resend
        if self.state.run is not None or self.ledger.run_queued():
            raise ApplicationError(
                "the agent is already working on a run: cancel it first",
                type=ErrorType.FAILED_PRECONDITION,
            )

    @workflow.update(name=Update.REWIND)
    async def rewind(self, rewind: fork.RewindInput) -> str:
        """Forget everything after a point; the run loop does it between turns."""
        self.rewinding, self.rewind_refused = rewind, ""
        await workflow.wait_condition(lambda: self.rewinding is None)
        if self.rewind_refused:
            raise ApplicationError(self.rewind_refused, type=ErrorType.FAILED_PRECONDITION)
        return self.state.status

    @rewind.validator
    def _validate_rewind(self, rewind: fork.RewindInput) -> None:
        self._refuse_if_deleting()
        if self.rewinding is not None:
            raise ApplicationError("a rewind is in progress", type=ErrorType.FAILED_PRECONDITION)
        try:
            fork.refuse_rewind(self.state, self.turn.active, rewind)
        except ValueError as err:
            raise ApplicationError(str(err), type=ErrorType.FAILED_PRECONDITION) from None

    @workflow.signal(name=Signal.DELETE)
    def delete(self) -> None:
        """End the agent: stop the turn in progress and drop queued messages."""
        self.ledger.deleting = True
        self._cancel_turn()

    @workflow.signal(name=Signal.UPGRADE)
    def upgrade(self) -> None:
        """Continue as new on the workers' current code at the next point the agent is idle
        between turns (at once if it is idle now), so no run outlives a release."""
        self.upgrading = True

    @workflow.signal(name=Signal.RELAY_TURN)
    def relay_turn(self, relay: RelayInput) -> None:
        """A client follows the turn from another gateway: stream there from now on."""
        self.turn.relay_to(relay.message_id, relay.reply_to)

    @workflow.signal(name=Signal.ADD_SUB_AGENT)
    def add_sub_agent(self, child: SubAgentInput) -> None:
        """A sub-agent was created for this agent (GetAgent lists it)."""
        if link_child(self.state, child.agent_id):
            self._set_status(AgentStatus(self.state.status))

    @workflow.query(name=Query.DESCRIBE)
    def describe(self) -> AgentInfo:
        return agent_info(self.state, self.ledger.completed_turns())

    @workflow.query(name=Query.EVENTS_AFTER)
    def events_after(self, query: EventsAfterInput) -> EventsPage:
        return EventsPage(
            self.log.since(query.seq), self.turn.in_flight(), self.state.archived_through
        )

    @workflow.query(name=Query.STATE)
    def whole_state(self) -> AgentState:
        return self.state

    @workflow.query(name=Query.HISTORY)
    def history(self) -> HistoryPage:
        return HistoryPage(self.state.turns, self.state.archived_turns)

    @workflow.query(name=Query.TURN_STATE)
    def turn_state(self, asked: TurnStateInput) -> TurnState:
        ledger, message_id = self.ledger, asked.message_id
        if ledger.has_ended(message_id):
            return TurnState.ENDED
        if ledger.is_queued(message_id):
            return TurnState.QUEUED
        return TurnState.RUNNING if ledger.find(message_id) else TurnState.UNKNOWN

    # --- the same handlers with bare arguments, as releases before 0.7 named them ----------

    @workflow.update(name=Update.WAIT_TURN)
    async def wait_turn(self, message_id: str) -> TurnResult:
        return await self._turn_result(message_id)

    @wait_turn.validator
    def _validate_wait_turn(self, message_id: str) -> None:
        self._refuse_unknown(message_id)

    @workflow.update(name=Update.WITHDRAW)
    def withdraw(self, message_id: str) -> str:
        return self._withdraw(message_id)

    @workflow.update(name=Update.CONTROL)
    def control(self, command: str) -> str:
        return self._control(command)

    @control.validator
    def _validate_control(self, command: str) -> None:
        self._validate_command(command)

    @workflow.signal(name=Signal.RELAY_TO)
    def relay_to(self, message_id: str, reply_to: str) -> None:
        self.relay_turn(RelayInput(message_id=message_id, reply_to=reply_to))

    @workflow.signal(name=Signal.ADD_CHILD)
    def add_child(self, agent_id: str) -> None:
        self.add_sub_agent(SubAgentInput(agent_id=agent_id))

    @workflow.query(name=Query.EVENTS_SINCE)
    def events_since(self, seq: int) -> EventsPage:
        return self.events_after(EventsAfterInput(seq=seq))

    # --- helpers --------------------------------------------------------------------------

    def _take_message(self, message: ChatInput) -> None:
        if self.ledger.enqueue(
            message.message_id, message.content, message.reply_to, message.attachments
        ):
            self._touch()
            if (
                self.turn.interruptible
                and double_texting.interrupts(self.state)
                and patches.check(patches.DOUBLE_TEXTING)
            ):
                self.turn.interrupt()

    async def _turn_result(self, message_id: str) -> TurnResult:
        queued = self.ledger.is_queued(message_id)
        if not self.ledger.has_ended(message_id) and self.waiters.turn_away(queued):
            return TurnResult(message_id=message_id, events=[], later=True)
        with self.waiters.waiting():
            await workflow.wait_condition(
                lambda: self.ledger.has_ended(message_id) or self.handing_over
            )
        if not self.ledger.has_ended(message_id):
            return TurnResult(message_id=message_id, events=[], continued=True)
        turn = self.ledger.find(message_id)
        if turn is None:
            withdrawn = message_id in self.ledger.withdrawn
            raise ApplicationError(
                "the message was withdrawn before it was answered"
                if withdrawn
                else "the agent was deleted before this message was answered",
                type=ErrorType.FAILED_PRECONDITION,
            )
        return TurnResult(
            message_id=message_id,
            events=self.log.between(turn.first_seq, turn.last_seq),
            first_seq=turn.first_seq,
            last_seq=turn.last_seq,
            archived_through=self.state.archived_through,
        )

    def _control(self, command: str) -> str:
        if command == Command.RESUME:
            self.calls.budget_nudged = True
        if command == Command.PAUSE and not self.state.paused:
            self.state.paused = True
            self._notice(Notice.PAUSED, "paused: new messages wait until resume")
            if not self.turn.active:
                self._set_status(AgentStatus.PAUSED)
        elif command == Command.RESUME and self.state.paused:
            self.state.paused = False
            self._notice(Notice.RESUMED, "resumed")
            if not self.turn.active:
                self._set_status(AgentStatus.IDLE)
        elif command == Command.CANCEL and self.turn.active:
            self._cancel_turn()
        elif command == Command.CANCEL and self.state.run is not None:
            # A run waiting for the user's answer: it ends here.
            self.state.run_steps += self.state.run.steps
            self.state.run = None
            self._notice(Notice.RESUMED, "the run was cancelled")
        elif command == Command.RETRY:
            try:
                self.ledger.enqueue_retry()
            except NothingToRetry as err:
                # Refused by the validator now; kept for histories in which it was accepted.
                raise ApplicationError(str(err), type=ErrorType.FAILED_PRECONDITION) from None
        self._touch()
        return self.state.status

    def _validate_command(self, command: str) -> None:
        if command not in set(Command):
            raise ValueError(f"unknown command {command!r}")
        self._refuse_if_deleting()
        if command == Command.RETRY and self.ledger.last_failed() is None:
            raise ApplicationError("no failed turn to retry", type=ErrorType.FAILED_PRECONDITION)

    def _withdraw(self, message_id: str) -> str:
        """The sender no longer wants this message answered (the agent that delegated it was
        cancelled): its turn is cancelled if it is in progress, dropped if it still waits."""
        if self.turn.answers(message_id):
            self._cancel_turn()
        elif self.ledger.withdraw(message_id):
            self._touch()
        return self.state.status

    def _cancel_turn(self) -> None:
        """Stop the turn in progress, whatever it is doing: calling the LLM, running a tool or
        waiting for a person or a client."""
        if self.turn.cancel():
            self.tool_use.cancel()

    def _refuse_if_deleting(self) -> None:
        if self.ledger.deleting:
            raise ApplicationError("agent is being deleted", type=ErrorType.FAILED_PRECONDITION)

    def _refuse_unknown(self, message_id: str) -> None:
        if not self.ledger.is_known(message_id):
            raise ValueError(f"no message {message_id!r}")

    def _notice(self, status: Notice, text: str) -> None:
        self.turn.notice(status, text, self._now())

    def _set_status(self, status: AgentStatus) -> None:
        if status != self.state.status:
            self.state.status = status
            status_filing.file_under(status, paused=self.state.paused)
        self._touch()
        # What the Web UI shows as the agent's current details.
        workflow.set_current_details(ui.current_details(self.state, self.ledger.completed_turns()))

    def _touch(self) -> None:
        self.state.updated_at = self._now()

    @staticmethod
    def _now() -> float:
        return workflow.now().timestamp()

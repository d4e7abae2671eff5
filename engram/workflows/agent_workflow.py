"""The agent: one long-running workflow whose state is the agent's whole memory.

Chat messages arrive as updates and are answered one turn at a time, in arrival order. Each turn
runs the LLM activity, which streams tokens to the gateway directly; only the finished turn is
recorded here, so history grows by a handful of events per turn, not per token.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
)

# Activities run outside the sandbox; the workflow's own modules below are imported into it, so
# a sandbox that does not pass them through (the replay and in-process tests') checks them too.
with workflow.unsafe.imports_passed_through():
    from engram.activities.llm_stream import LLMActivities
from engram.vocabulary import (
    STATUS_ATTRIBUTE,
    AgentStatus,
    Command,
    ErrorType,
    EventKind,
    Notice,
    Query,
    Signal,
    TurnOutcome,
    Update,
)
from engram.workflows import autonomy, double_texting, edits, patches, ui
from engram.workflows.announce import announce
from engram.workflows.describe import agent_info, link_child
from engram.workflows.events import EventLog
from engram.workflows.ledger import NothingToRetry, TurnLedger
from engram.workflows.llm_outcome import LLM_RETRY, cancelled, failed_result
from engram.workflows.maintenance import Maintenance
from engram.workflows.prompt import (
    build_prompt,
    context_budget,
)
from engram.workflows.tool_use import ToolUse, TurnCancelled, TurnHooks
from engram.workflows.types import (
    AgentInfo,
    AgentState,
    AnnounceInput,
    ChatInput,
    ClientToolResult,
    Decision,
    EditInput,
    Event,
    EventsPage,
    HistoryPage,
    InFlight,
    LLMRequest,
    LLMResult,
    RunInput,
    RunState,
    ToolRound,
    Turn,
    TurnResult,
)

# Rounds of tool use in one turn; the last call offers no tools, so the model must answer.
# An agent that only keeps notes needs few; one with tools works through several steps.
MAX_TOOL_ROUNDS = 3
MAX_TOOL_ROUNDS_WITH_TOOLS = 10


@workflow.defn(name="AgentWorkflow")
class AgentWorkflow:
    @workflow.init
    def __init__(self, state: AgentState) -> None:
        self.state = state
        self.ledger = TurnLedger(state)
        self.log = EventLog(state)
        self.upkeep = Maintenance(state, self.ledger, self.log)
        self.current: Turn | None = None
        self.llm_call: workflow.ActivityHandle[LLMResult] | None = None
        self.tool_use = ToolUse(state, self.log)
        # Cancel was asked for the turn in progress (it may be waiting rather than calling).
        self.cancelling = False
        # Status notices raised mid-turn wait here so a turn's events stay contiguous.
        self.deferred: list[tuple[Notice, str]] = []
        # This turn's rounds of tool use (a run keeps its own, in its state) and the events the
        # next LLM call re-sends to the gateway.
        self.rounds: list[ToolRound] = []
        self.prelude: list[Event] = []
        # The newest event the turn's gateway was sent (by an LLM call or an announcement).
        self.relayed_through = 0
        # A new message cut off the step's LLM call (double texting: interrupt), which may be cut.
        self.interrupted = False
        self.interruptible = False
        # A run is about to continue as new: handlers waiting on a turn return "continued".
        self.handing_over = False
        # An upgrade was asked for: continue as new once idle between turns.
        self.upgrading = False
        if state.run is not None and state.turns and not state.turns[-1].outcome:
            # Continued as new in the middle of a run: its turn is still in progress.
            self.current = state.turns[-1]

    @workflow.run
    async def run(self, state: AgentState) -> str:
        ledger = self.ledger
        while True:
            await workflow.wait_condition(
                lambda: (
                    ledger.deleting
                    or self._run_may_step()
                    or self._ready()
                    or self._history_is_long()
                    or self._upgrade_due()
                )
            )
            if ledger.deleting:
                break
            if self._run_may_step():
                assert self.current is not None
                if not await self._step(self.current):
                    await self.upkeep.between_turns()
                    continue
                # A run's turn can outlast any number of turns: its events are archived as it goes,
                # and it continues as new between two steps, when nobody waits on a handler.
                if self.upkeep.events_pile_up():
                    await self.upkeep.archive_events()
                if self._history_is_long() and await self._handed_over():
                    workflow.continue_as_new(self.state)
                continue
            if self._ready():
                await self._run_turn()
                # About to continue-as-new? Then no await first: a client sending its next message
                # right away would keep the run busy, and history growing, indefinitely.
                if self.state.queue or not self._history_is_long():
                    await self.upkeep.between_turns()
                continue
            # Handlers still waiting can only be waiting for a turn, which needs this loop.
            await workflow.wait_condition(
                lambda: (
                    workflow.all_handlers_finished()
                    or self._ready()
                    or self._run_may_step()
                    or ledger.deleting
                )
            )
            # No await between this check and continuing: a message arriving in between would
            # otherwise be accepted by a run that is about to end.
            if (
                workflow.all_handlers_finished()
                and not self._ready()
                and not self._run_may_step()
                and not ledger.deleting
            ):
                workflow.continue_as_new(self.state)

        ledger.drop_queue()
        self._set_status(AgentStatus.DELETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return AgentStatus.DELETED

    def _ready(self) -> bool:
        """A queued message may start: none is in progress (a run takes its steps first)."""
        return self.current is None and self.ledger.ready()

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
        return not self.cancelling and not self.ledger.deleting

    def _upgrade_due(self) -> bool:
        """An upgrade was asked for and the agent is between turns, with no run going on or
        waiting for its user. Old histories never had the signal, so this stays False on them."""
        return self.upgrading and self.current is None and self.state.run is None

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self.state.max_history_events
        )

    # --- one turn, step by step ------------------------------------------------------------

    async def _run_turn(self) -> None:
        """A chat turn: steps until the model answers. A run only starts here; the loop takes
        its steps one at a time."""
        turn = self._start_turn()
        if self.state.run is None:
            while await self._step(turn):
                pass

    def _start_turn(self) -> Turn:
        spec = self.state.spec
        starts_run = self.state.queue[0].starts_run
        turn = self.ledger.start_next(self.state.next_seq, self._now())
        mid = turn.message_id
        self.current = turn
        self.rounds = []
        self.prelude = [self._emit(EventKind.USER_MESSAGE, text=turn.user, message_id=mid)]
        if starts_run:
            self.state.run = autonomy.start(turn, spec, self._now())
            notice = (Notice.RUN_STARTED, turn.user or spec.goal)
        elif self.state.run is not None:
            # The user answered the run's question: the run goes on, in this turn.
            autonomy.answered(self.state.run, turn.user)
            notice = (Notice.RUN_STARTED, "the run goes on with your answer")
        else:
            notice = (Notice.THINKING, f"model {spec.model}")
        self.prelude.append(
            self._emit(EventKind.STATUS, text=notice[1], code=notice[0], message_id=mid)
        )
        self._status_changed()
        return turn

    def _run_may_step(self) -> bool:
        run = self.state.run
        return (
            run is not None
            and self.current is not None
            and not self.state.paused
            and not self.ledger.deleting
        )

    async def _step(self, turn: Turn) -> bool:
        """One LLM call and the tool calls it asks for; whether the turn goes on."""
        run = self.state.run
        mid = turn.message_id
        if run is not None:
            if self.cancelling:
                self._end_turn(turn, cancelled([]))
                return False
            limit = autonomy.limit_reached(run, self.state, self._now())
            if limit:
                await self._report(turn, run, limit)
                return False
        # The safe point for messages that came in meanwhile: every call has its result.
        if double_texting.waiting(self.state) and patches.check(patches.DOUBLE_TEXTING):
            held = run.rounds if run is not None else self.rounds
            double_texting.take_in(self.state, self.log, turn, held, self._now())
            self._touch()
        if run is not None:
            rounds = autonomy.recent_rounds(run, context_budget(self.state.spec))
            offer_tools = True
            user = autonomy.instructions(run)
        else:
            rounds = self.rounds
            max_rounds = MAX_TOOL_ROUNDS_WITH_TOOLS if self.state.tools else MAX_TOOL_ROUNDS
            offer_tools = not self.state.tools_refused and len(rounds) < max_rounds
            user = turn.user
        tools = self.tool_use.offered(run is not None) if offer_tools else []
        self.interruptible = True
        result = await self._call_llm(self._request(turn, user, tools, rounds))
        self.interruptible = False
        self._record(turn, result)
        self.relayed_through = self.state.next_seq - 1
        if run is not None:
            run.steps += 1
            run.tokens += result.tokens
        if self.interrupted:
            self.interrupted = False
            if result.outcome == TurnOutcome.CANCELLED and not self.cancelling:
                # Its partial text is not part of the conversation; the next step takes the
                # message in.
                self._emit(
                    EventKind.STATUS,
                    text="cut off by a new message",
                    code=Notice.INTERRUPTED,
                    message_id=mid,
                )
                return True
        # Calls to tools that were not offered are not made: the model must answer now.
        if result.outcome != TurnOutcome.COMPLETED or not result.tool_calls or not offer_tools:
            self._end_turn(turn, result)
            return False
        hooks = TurnHooks(
            announce=lambda: self._announce(turn),
            stopping=lambda: self.cancelling or self.ledger.deleting,
            waiting_changed=self._status_changed,
        )
        try:
            calls, outputs, self.prelude = await self.tool_use.run_calls(
                result.tool_calls, mid, hooks
            )
        except TurnCancelled:
            self._end_turn(turn, cancelled([]))
            return False
        finally:
            self._touch()
        rounds.append(ToolRound(result.reply, calls, outputs))
        finished = self.tool_use.take_finished()
        if finished is not None:
            self._end_turn(turn, result, finished)
            return False
        return True

    async def _report(self, turn: Turn, run: RunState, limit: str) -> None:
        """End a run that reached a bound: a notice, then the model's report of where it got."""
        self._emit(
            EventKind.STATUS,
            text=f"limit reached: {limit}",
            code=Notice.LIMIT_REACHED,
            message_id=turn.message_id,
        )
        autonomy.fold_all(run)
        ask = f"{autonomy.instructions(run)}\n\n{autonomy.REPORT_INSTRUCTIONS.format(limit=limit)}"
        result = await self._call_llm(self._request(turn, ask, [], []))
        self._record(turn, result)
        run.tokens += result.tokens
        self._end_turn(turn, result)

    def _request(
        self, turn: Turn, user: str, tools: list[dict[str, Any]], rounds: list[ToolRound]
    ) -> LLMRequest:
        spec = self.state.spec
        return LLMRequest(
            agent_id=spec.agent_id,
            message_id=turn.message_id,
            model=spec.model,
            messages=build_prompt(
                spec,
                self.state.turns[:-1],
                user,
                self.state.summary,
                self.state.notes,
                self.upkeep.counter(),
                turn.attachments,
            ),
            prelude=self.prelude,
            first_text_seq=self.state.next_seq,
            reply_to=turn.reply_to,
            temperature=spec.temperature,
            tools=tools,
            tool_rounds=rounds,
            thinking=bool(spec.config.get("enableThinking")),
        )

    def _record(self, turn: Turn, result: LLMResult) -> None:
        """The LLM call's streamed pieces, as the turn's events."""
        for piece in result.pieces:
            self._emit(
                EventKind(piece.kind),
                text=piece.text,
                code=piece.code,
                message_id=turn.message_id,
                at=piece.at,
            )
        turn.tokens += result.tokens
        self.state.tools_refused |= result.tools_refused

    def _end_turn(
        self, turn: Turn, result: LLMResult, finished: autonomy.Finished | None = None
    ) -> None:
        turn.ended_at = self._now()
        turn.outcome = result.outcome
        run = self.state.run
        if result.outcome == TurnOutcome.COMPLETED:
            if finished is not None:
                turn.reply = finished.answer
            elif run is not None:
                turn.reply = result.reply
            else:
                turn.reply = "".join(r.text for r in self.rounds) + result.reply
            event = self._emit(EventKind.FINAL_ANSWER, text=turn.reply, message_id=turn.message_id)
            if finished is not None and finished.structured is not None:
                event.structured = finished.structured
        else:
            turn.error = result.error_message
            self._emit(
                EventKind.ERROR,
                text=result.error_message,
                code=result.error_code,
                message_id=turn.message_id,
            )
        turn.last_seq = self.state.next_seq - 1
        self.state.tokens_used += turn.tokens
        self.state.busy_seconds += turn.ended_at - turn.started_at
        if run is not None:
            self.state.run_turns += turn.outcome == TurnOutcome.COMPLETED
            if finished is not None and finished.asks_user and not self.cancelling:
                run.waiting_for_user = True
            else:
                self.state.run_steps += run.steps
                self.state.run = None
        self.current = None
        self.llm_call = None
        self.cancelling = False
        self._status_changed()
        for status, text in self.deferred:
            self._notice(status, text)
        self.deferred.clear()

    async def _announce(self, turn: Turn) -> None:
        """Send the turn's events so far to its gateway now (see workflows/announce.py)."""
        since = max(self.relayed_through, turn.first_seq - 1)
        events = self.log.since(since)
        agent_id = self.state.spec.agent_id
        if await announce(AnnounceInput(agent_id=agent_id, reply_to=turn.reply_to, events=events)):
            self.relayed_through = self.state.next_seq - 1

    def _status_changed(self) -> None:
        self._set_status(ui.status(self.state, turn_in_progress=self.current is not None))

    async def _call_llm(self, request: LLMRequest) -> LLMResult:
        self.llm_call = workflow.start_activity_method(
            LLMActivities.stream_chat,
            request,
            summary=f"{request.model}: {len(request.tool_rounds)} tool rounds so far",
            start_to_close_timeout=timedelta(minutes=10),
            # Short, so a turn whose worker died moves to another worker within seconds.
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=LLM_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            return await self.llm_call
        except ActivityError as err:
            return failed_result(err)

    # --- handlers: each with its validator ------------------------------------------------

    @workflow.update
    async def chat(self, message: ChatInput) -> TurnResult:
        if self.ledger.enqueue(
            message.message_id, message.content, message.reply_to, message.attachments
        ):
            self._touch()
            if (
                self.interruptible
                and double_texting.interrupts(self.state)
                and patches.check(patches.DOUBLE_TEXTING)
            ):
                assert self.llm_call is not None
                self.interrupted = True
                self.llm_call.cancel()
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
            double_texting.refuse_if_busy(self.state, busy=self.current is not None)

    @workflow.update
    async def wait_turn(self, message_id: str) -> TurnResult:
        """The events of a turn once it has ended (at once if it already has)."""
        return await self._turn_result(message_id)

    @wait_turn.validator
    def _validate_wait_turn(self, message_id: str) -> None:
        if not self.ledger.is_known(message_id):
            raise ValueError(f"no message {message_id!r}")

    @workflow.update(name=Update.WITHDRAW)
    def withdraw(self, message_id: str) -> str:
        """The sender no longer wants this message answered (the agent that delegated it was
        cancelled): its turn is cancelled if it is in progress, dropped if it still waits."""
        if self.current is not None and self.current.message_id == message_id:
            self._cancel_turn()
        elif self.ledger.withdraw(message_id):
            self._touch()
        return self.state.status

    @workflow.update
    def control(self, command: str) -> str:
        """pause, resume, cancel (the turn in progress) or retry (the last failed turn)."""
        if command == Command.PAUSE and not self.state.paused:
            self.state.paused = True
            self._notice(Notice.PAUSED, "paused: new messages wait until resume")
            if self.current is None:
                self._set_status(AgentStatus.PAUSED)
        elif command == Command.RESUME and self.state.paused:
            self.state.paused = False
            self._notice(Notice.RESUMED, "resumed")
            if self.current is None:
                self._set_status(AgentStatus.IDLE)
        elif command == Command.CANCEL and self.current is not None:
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

    @control.validator
    def _validate_control(self, command: str) -> None:
        if command not in set(Command):
            raise ValueError(f"unknown command {command!r}")
        self._refuse_if_deleting()
        if command == Command.RETRY and self.ledger.last_failed() is None:
            raise ApplicationError("no failed turn to retry", type=ErrorType.FAILED_PRECONDITION)

    @workflow.update
    def edit(self, edit: EditInput) -> str:
        """Change the goal, instructions, settings or memory notes; the next turn uses them."""
        changed = edits.apply(self.state, edit, self._now())
        self._notice(Notice.EDITED, edit.description or f"edited {', '.join(changed)}")
        self._touch()
        return self.state.status

    @edit.validator
    def _validate_edit(self, edit: EditInput) -> None:
        self._refuse_if_deleting()
        edits.check(self.state, edit)

    @workflow.update
    def decide(self, decision: Decision) -> str:
        """A person's answer to a tool call awaiting approval; the same answer again is a no-op."""
        if self.tool_use.take_decision(decision):
            self._touch()
        return self.state.status

    @decide.validator
    def _validate_decide(self, decision: Decision) -> None:
        self._refuse_if_deleting()
        self.tool_use.check_decision(decision)

    @workflow.update
    def submit_tool_result(self, result: ClientToolResult) -> str:
        """What a client's tool returned; the same result again is a no-op."""
        if self.tool_use.take_result(result):
            self._touch()
        return self.state.status

    @submit_tool_result.validator
    def _validate_submit_tool_result(self, result: ClientToolResult) -> None:
        self._refuse_if_deleting()
        self.tool_use.check_result(result)

    @workflow.update
    def start_run(self, request: RunInput) -> str:
        """Start an autonomous run (queued behind messages already waiting)."""
        if self.ledger.enqueue(request.run_id, request.instructions, request.reply_to):
            self.state.queue[-1].starts_run = True
            self._touch()
        return self.state.status

    @start_run.validator
    def _validate_start_run(self, request: RunInput) -> None:
        self._refuse_if_deleting()
        if not request.run_id:
            raise ValueError("run_id is required")
        if self.ledger.is_known(request.run_id):
            return  # a resend
        if self.state.run is not None or any(p.starts_run for p in self.state.queue):
            raise ApplicationError(
                "the agent is already working on a run: cancel it first",
                type=ErrorType.FAILED_PRECONDITION,
            )

    @workflow.signal
    def delete(self) -> None:
        """End the agent: stop the turn in progress and drop queued messages."""
        self.ledger.deleting = True
        self._cancel_turn()

    @workflow.signal(name=Signal.UPGRADE)
    def upgrade(self) -> None:
        """Continue as new on the workers' current code at the next point the agent is idle
        between turns (at once if it is idle now), so no run outlives a release."""
        self.upgrading = True

    @workflow.signal
    def relay_to(self, message_id: str, reply_to: str) -> None:
        """A client follows the turn from another gateway: stream there from now on."""
        if self.current is not None and self.current.message_id == message_id:
            self.current.reply_to = reply_to

    @workflow.signal(name=Signal.ADD_CHILD)
    def add_child(self, agent_id: str) -> None:
        """A sub-agent was created for this agent (GetAgent lists it)."""
        if link_child(self.state, agent_id):
            self._set_status(AgentStatus(self.state.status))

    @workflow.query
    def describe(self) -> AgentInfo:
        return agent_info(self.state, self.ledger.completed_turns())

    @workflow.query(name=Query.EVENTS_SINCE)
    def events_since(self, seq: int) -> EventsPage:
        in_flight = None
        if self.current is not None:
            t = self.current
            in_flight = InFlight(t.message_id, t.reply_to, t.first_seq)
        return EventsPage(self.log.since(seq), in_flight, self.state.archived_through)

    @workflow.query(name=Query.HISTORY)
    def history(self) -> HistoryPage:
        return HistoryPage(self.state.turns, self.state.archived_turns)

    # --- helpers --------------------------------------------------------------------------

    async def _turn_result(self, message_id: str) -> TurnResult:
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

    def _cancel_turn(self) -> None:
        """Stop the turn in progress, whatever it is doing: calling the LLM, running a tool or
        waiting for a person or a client."""
        if self.current is None:
            return
        self.cancelling = True
        if self.llm_call is not None:
            self.llm_call.cancel()
        self.tool_use.cancel()

    def _refuse_if_deleting(self) -> None:
        if self.ledger.deleting:
            raise ApplicationError("agent is being deleted", type=ErrorType.FAILED_PRECONDITION)

    def _emit(
        self,
        kind: EventKind,
        *,
        text: str = "",
        code: str = "",
        message_id: str = "",
        at: float = 0.0,
    ) -> Event:
        event = self.log.emit(
            kind=kind, text=text, code=code, message_id=message_id, now=at or self._now()
        )
        self._touch()
        return event

    def _notice(self, status: Notice, text: str) -> None:
        """A status notice now, or after the turn in progress so its events stay together.

        A run's turn may last days: notices during it are part of it, at once."""
        if self.current is None:
            self.log.notice(status, text, now=self._now())
            self._touch()
        elif self.state.run is not None:
            self.log.notice(status, text, now=self._now(), message_id=self.current.message_id)
            self._touch()
        else:
            self.deferred.append((status, text))

    def _set_status(self, status: AgentStatus) -> None:
        if status != self.state.status:
            self.state.status = status
            workflow.upsert_search_attributes([STATUS_ATTRIBUTE.value_set(status)])
        self._touch()
        # What the Web UI shows as the agent's current details.
        workflow.set_current_details(ui.current_details(self.state, self.ledger.completed_turns()))

    def _touch(self) -> None:
        self.state.updated_at = self._now()

    @staticmethod
    def _now() -> float:
        return workflow.now().timestamp()

"""The agent: one long-running workflow whose state is the agent's whole memory.

Chat messages arrive as updates and are answered one turn at a time, in arrival order. Each turn
runs the LLM activity, which streams tokens to the gateway directly; only the finished turn is
recorded here, so history grows by a handful of events per turn, not per token.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from engram.activities.archive import ArchiveActivities, ArchiveInput, TurnsArchiveInput
    from engram.activities.llm_stream import LLMActivities
    from engram.workflows import memory
    from engram.workflows.prompt import (
        build_prompt,
        context_budget,
        estimate_tokens,
        system_message,
        turn_messages,
    )
    from engram.workflows.tokens import (
        CHARS_PER_TOKEN,
        TextCounter,
        cl100k,
        estimated,
        has_tokenizer,
    )
    from engram.workflows.types import (
        CANCELLED,
        COMPLETED,
        DELETED,
        ERROR,
        FAILED,
        FINAL_ANSWER,
        IDLE,
        PAUSED,
        STATUS,
        THINKING,
        TOOL_CALL,
        TOOL_RESULT,
        USER_MESSAGE,
        AgentInfo,
        AgentState,
        ChatInput,
        EditInput,
        Event,
        EventsPage,
        HistoryPage,
        InFlight,
        LLMRequest,
        LLMResult,
        MemoryNote,
        PendingMessage,
        StreamPiece,
        SummaryRequest,
        ToolCall,
        ToolRound,
        Turn,
        TurnResult,
    )

STATUS_ATTRIBUTE = SearchAttributeKey.for_keyword("EngramStatus")

# Stream events kept in workflow state before older ones go to the transcript store.
EVENTS_IN_STATE = 500
# Rounds of tool use in one turn; the last call offers no tools, so the model must answer.
MAX_TOOL_ROUNDS = 3

LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)


@workflow.defn(name="AgentWorkflow")
class AgentWorkflow:
    @workflow.init
    def __init__(self, state: AgentState) -> None:
        self.state = state
        self.deleting = False
        self.current: Turn | None = None
        self.llm_call: workflow.ActivityHandle[LLMResult] | None = None
        # Status notices raised mid-turn wait here so a turn's events stay contiguous.
        self.deferred: list[tuple[str, str]] = []

    @workflow.run
    async def run(self, state: AgentState) -> str:
        while True:
            await workflow.wait_condition(
                lambda: self.deleting or self._ready() or self._history_is_long()
            )
            if self.deleting:
                break
            if self._ready():
                await self._run_turn(self.state.queue.pop(0))
                # About to continue-as-new? Then no await first: a client sending its next message
                # right away would keep the run busy, and history growing, indefinitely.
                if self.state.queue or not self._history_is_long():
                    await self._maintain()
                continue
            # Handlers still waiting can only be waiting for a turn, which needs this loop.
            await workflow.wait_condition(
                lambda: workflow.all_handlers_finished() or self._ready() or self.deleting
            )
            # No await between this check and continuing: a message arriving in between would
            # otherwise be accepted by a run that is about to end.
            if workflow.all_handlers_finished() and not self._ready() and not self.deleting:
                workflow.continue_as_new(self.state)

        self.state.queue.clear()
        self._set_status(DELETED)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return DELETED

    def _ready(self) -> bool:
        return bool(self.state.queue) and not self.state.paused

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self.state.max_history_events
        )

    async def _maintain(self) -> None:
        """Keep the state small: compact the conversation, archive stream events."""
        if self._conversation_tokens() > context_budget(self.state.spec) * 3 // 4:
            await self._compact()
        if len(self.state.events) > EVENTS_IN_STATE:
            await self._archive()

    def _conversation_tokens(self) -> int:
        head = system_message(self.state.spec, self.state.summary, self.state.notes)
        messages = turn_messages(self.state.turns) + ([head] if head else [])
        count = self._counter()
        return sum(estimate_tokens(m, count) for m in messages)

    def _counter(self) -> TextCounter:
        # Agents whose history was made with the estimate keep it when they replay.
        if has_tokenizer(self.state.spec.model) and workflow.patched("model-tokenizer"):
            return cl100k
        return estimated

    async def _compact(self) -> None:
        """Fold the oldest turns into the running summary and move them to the store.

        Keeps the newest turns that fit in half the budget verbatim. If the summary cannot be
        made now (the LLM is down), nothing changes: the prompt is trimmed instead, and the next
        turn tries again.
        """
        turns = self.state.turns
        room = context_budget(self.state.spec) // 2
        count = self._counter()
        keep = cost = 0
        while keep < len(turns):
            cost += sum(estimate_tokens(m, count) for m in turn_messages([turns[-keep - 1]]))
            if cost > room:
                break
            keep += 1
        old = turns[: len(turns) - keep]
        if not old:
            return
        try:
            summary = await workflow.execute_activity_method(
                LLMActivities.summarize,
                SummaryRequest(self.state.spec.model, self.state.summary, turn_messages(old)),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=LLM_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("could not summarize older turns; will retry next turn")
            return
        await workflow.execute_activity_method(
            ArchiveActivities.archive_turns,
            TurnsArchiveInput(self.state.spec.agent_id, self.state.archived_turns, old),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )
        limit = context_budget(self.state.spec) // 4 * CHARS_PER_TOKEN
        if len(summary) > limit:
            # A summary must leave room for the conversation itself.
            workflow.logger.warning("summary of %d chars cut to %d", len(summary), limit)
            summary = summary[:limit]
        self.state.summary = summary
        self.state.turns = self.state.turns[len(old) :]
        self.state.archived_turns += len(old)
        self.state.archived_completed_turns += sum(1 for t in old if t.outcome == COMPLETED)

    async def _archive(self) -> None:
        """Move the stream events of finished turns to the transcript store (claim check).

        Runs between turns; a notice emitted meanwhile is newer than what is archived and stays.
        """
        through = await workflow.execute_activity_method(
            ArchiveActivities.archive_events,
            ArchiveInput(self.state.spec.agent_id, list(self.state.events)),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )
        self.state.events = [e for e in self.state.events if e.seq > through]
        self.state.archived_through = max(self.state.archived_through, through)

    # --- one turn -------------------------------------------------------------------------

    async def _run_turn(self, pending: PendingMessage) -> None:
        spec = self.state.spec
        now = workflow.now().timestamp()
        turn = Turn(
            message_id=pending.message_id,
            user=pending.content,
            reply_to=pending.reply_to,
            first_seq=self.state.next_seq,
            started_at=now,
        )
        prelude = [
            self._emit(USER_MESSAGE, turn.user, message_id=turn.message_id),
            self._emit(STATUS, f"model {spec.model}", THINKING, turn.message_id),
        ]
        self.state.turns.append(turn)
        self.current = turn
        self._set_status(THINKING)

        # The model may use its memory tool before it answers; each round is one LLM call.
        rounds: list[ToolRound] = []
        while True:
            offer_tools = not self.state.tools_refused and len(rounds) < MAX_TOOL_ROUNDS
            result = await self._call_llm(
                LLMRequest(
                    agent_id=spec.agent_id,
                    message_id=turn.message_id,
                    model=spec.model,
                    messages=build_prompt(
                        spec,
                        self.state.turns[:-1],
                        turn.user,
                        self.state.summary,
                        self.state.notes,
                        self._counter(),
                    ),
                    prelude=prelude,
                    first_text_seq=self.state.next_seq,
                    reply_to=turn.reply_to,
                    temperature=spec.temperature,
                    tools=[memory.REMEMBER_TOOL] if offer_tools else [],
                    tool_rounds=rounds,
                )
            )
            for piece in result.pieces:
                self._emit(piece.kind, piece.text, piece.code, turn.message_id)
            turn.tokens += result.tokens
            self.state.tools_refused |= result.tools_refused
            # Calls to tools that were not offered are not made: the model must answer now.
            if result.outcome != COMPLETED or not result.tool_calls or not offer_tools:
                break
            outputs, prelude = self._use_tools(result.tool_calls, turn.message_id)
            rounds = [*rounds, ToolRound(result.reply, result.tool_calls, outputs)]

        turn.ended_at = workflow.now().timestamp()
        turn.outcome = result.outcome
        if result.outcome == COMPLETED:
            turn.reply = "".join(r.text for r in rounds) + result.reply
            self._emit(FINAL_ANSWER, turn.reply, message_id=turn.message_id)
        else:
            turn.error = result.error_message
            self._emit(ERROR, result.error_message, result.error_code, turn.message_id)
        turn.last_seq = self.state.next_seq - 1
        self.state.tokens_used += turn.tokens
        self.state.busy_seconds += turn.ended_at - turn.started_at
        self.current = None
        self.llm_call = None
        self._set_status(PAUSED if self.state.paused else IDLE)
        for status, text in self.deferred:
            self._emit(STATUS, text, status)
        self.deferred.clear()

    def _use_tools(self, calls: list[ToolCall], message_id: str) -> tuple[list[str], list[Event]]:
        """Carry out the model's tool calls; their results, and the events that show them."""
        outputs: list[str] = []
        events: list[Event] = []
        for call in calls:
            self.state.tool_calls += 1
            events.append(
                self._emit(TOOL_CALL, call.arguments, call.name, message_id, call.call_id)
            )
            try:
                output, outcome = (
                    memory.apply(self.state.notes, call, workflow.now().timestamp()),
                    "",
                )
            except memory.NoteError as err:
                output, outcome = f"error: {err}", "error"
            outputs.append(output)
            events.append(self._emit(TOOL_RESULT, output, outcome, message_id, call.call_id))
        return outputs, events

    async def _call_llm(self, request: LLMRequest) -> LLMResult:
        self.llm_call = workflow.start_activity_method(
            LLMActivities.stream_chat,
            request,
            start_to_close_timeout=timedelta(minutes=10),
            # Short, so a turn whose worker died moves to another worker within seconds.
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=LLM_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            return await self.llm_call
        except ActivityError as err:
            return _failed_result(err)

    # --- handlers -------------------------------------------------------------------------

    @workflow.update
    async def chat(self, message: ChatInput) -> TurnResult:
        if self._find_turn(message.message_id) is None and not any(
            p.message_id == message.message_id for p in self.state.queue
        ):
            self.state.queue.append(
                PendingMessage(message.message_id, message.content, message.reply_to)
            )
            self._touch()
        return await self._turn_result(message.message_id)

    @chat.validator
    def _validate_chat(self, message: ChatInput) -> None:
        if self.deleting:
            raise ApplicationError("agent is being deleted", type="FailedPrecondition")
        if not message.message_id:
            raise ValueError("message_id is required")
        if not message.content.strip() and self._find_turn(message.message_id) is None:
            raise ValueError("content is empty")

    @workflow.update
    async def wait_turn(self, message_id: str) -> TurnResult:
        """The events of a turn once it has ended (at once if it already has)."""
        return await self._turn_result(message_id)

    async def _turn_result(self, message_id: str) -> TurnResult:
        await workflow.wait_condition(lambda: self._turn_ended(message_id))
        turn = self._find_turn(message_id)
        if turn is None:
            raise ApplicationError(
                "the agent was deleted before this message was answered", type="FailedPrecondition"
            )
        return TurnResult(
            message_id,
            self._events_between(turn.first_seq, turn.last_seq),
            turn.first_seq,
            turn.last_seq,
            self.state.archived_through,
        )

    @wait_turn.validator
    def _validate_wait_turn(self, message_id: str) -> None:
        if self._find_turn(message_id) is None and not any(
            p.message_id == message_id for p in self.state.queue
        ):
            raise ValueError(f"no message {message_id!r}")

    @workflow.update
    def control(self, command: str) -> str:
        """pause, resume, cancel (the turn in progress) or retry (the last failed turn)."""
        if command == "pause" and not self.state.paused:
            self.state.paused = True
            self._notice(PAUSED, "paused: new messages wait until resume")
            if self.current is None:
                self._set_status(PAUSED)
        elif command == "resume" and self.state.paused:
            self.state.paused = False
            self._notice("resumed", "resumed")
            if self.current is None:
                self._set_status(IDLE)
        elif command == "cancel" and self.llm_call is not None:
            self.llm_call.cancel()
        elif command == "retry":
            failed = next(
                (t for t in reversed(self.state.turns) if t.outcome in (FAILED, CANCELLED)), None
            )
            if failed is None:
                raise ApplicationError("no failed turn to retry", type="FailedPrecondition")
            retries = sum(1 for t in self.state.turns if t.message_id.startswith(failed.message_id))
            self.state.queue.append(
                PendingMessage(f"{failed.message_id}#retry{retries}", failed.user, failed.reply_to)
            )
        self._touch()
        return self.state.status

    @control.validator
    def _validate_control(self, command: str) -> None:
        if command not in ("pause", "resume", "cancel", "retry"):
            raise ValueError(f"unknown command {command!r}")
        if self.deleting:
            raise ApplicationError("agent is being deleted", type="FailedPrecondition")

    @workflow.update
    def edit(self, edit: EditInput) -> str:
        """Change the goal, instructions, settings or memory notes; the next turn uses them."""
        spec = self.state.spec
        changed = [
            name
            for name, value in vars(edit).items()
            if name != "description" and value is not None and value != {}
        ]
        if edit.goal is not None:
            spec.goal = edit.goal
            workflow.upsert_memo({"goal": spec.goal})
        if edit.system_prompt is not None:
            spec.system_prompt = edit.system_prompt
        # spec.config is the AgentConfig as proto3 JSON, which GetAgent returns: keep it true.
        if edit.temperature is not None:
            spec.temperature = edit.temperature or None
            spec.config["temperature"] = edit.temperature
        if edit.max_context_tokens is not None:
            spec.max_context_tokens = edit.max_context_tokens
            spec.config["maxContextTokens"] = edit.max_context_tokens
        now = workflow.now().timestamp()
        for name, content in edit.memory.items():
            memory.write(self.state.notes, name, content, now)
        self._notice("edited", edit.description or f"edited {', '.join(changed)}")
        self._touch()
        return self.state.status

    @edit.validator
    def _validate_edit(self, edit: EditInput) -> None:
        if self.deleting:
            raise ApplicationError("agent is being deleted", type="FailedPrecondition")
        # Try the notes on a copy: an edit is applied whole or not at all.
        trial = [MemoryNote(n.name, n.content) for n in self.state.notes]
        for name, content in edit.memory.items():
            try:
                memory.write(trial, name, content, 0.0)
            except memory.NoteError as err:
                raise ValueError(f"memory note {name!r}: {err}") from None

    @workflow.signal
    def delete(self) -> None:
        """End the agent: stop the turn in progress and drop queued messages."""
        self.deleting = True
        if self.llm_call is not None:
            self.llm_call.cancel()

    @workflow.signal
    def relay_to(self, message_id: str, reply_to: str) -> None:
        """A client follows the turn from another gateway: stream there from now on."""
        if self.current is not None and self.current.message_id == message_id:
            self.current.reply_to = reply_to

    @workflow.query
    def describe(self) -> AgentInfo:
        s = self.state
        return AgentInfo(
            spec=s.spec,
            status=s.status,
            created_at=s.created_at,
            updated_at=s.updated_at,
            completed_turns=s.archived_completed_turns
            + sum(1 for t in s.turns if t.outcome == COMPLETED),
            tokens_used=s.tokens_used,
            busy_seconds=s.busy_seconds,
            queued_messages=len(s.queue),
            last_seq=s.next_seq - 1,
            notes=s.notes,
            tool_calls=s.tool_calls,
        )

    @workflow.query
    def events_since(self, seq: int) -> EventsPage:
        events = [e for e in self.state.events if e.seq > seq]
        in_flight = None
        if self.current is not None:
            t = self.current
            in_flight = InFlight(t.message_id, t.reply_to, t.first_seq)
        return EventsPage(events, in_flight, self.state.archived_through)

    @workflow.query
    def history(self) -> HistoryPage:
        return HistoryPage(self.state.turns, self.state.archived_turns)

    # --- helpers --------------------------------------------------------------------------

    def _emit(
        self, kind: str, text: str, code: str = "", message_id: str = "", call_id: str = ""
    ) -> Event:
        event = Event(
            self.state.next_seq, kind, text, code, message_id, workflow.now().timestamp(), call_id
        )
        self.state.events.append(event)
        self.state.next_seq += 1
        self._touch()
        return event

    def _notice(self, status: str, text: str) -> None:
        if self.current is None:
            self._emit(STATUS, text, status)
        else:
            self.deferred.append((status, text))

    def _set_status(self, status: str) -> None:
        if status != self.state.status:
            self.state.status = status
            workflow.upsert_search_attributes([STATUS_ATTRIBUTE.value_set(status)])
        self._touch()

    def _touch(self) -> None:
        self.state.updated_at = workflow.now().timestamp()

    def _find_turn(self, message_id: str) -> Turn | None:
        for turn in reversed(self.state.turns):
            if turn.message_id == message_id:
                return turn
        return None

    def _turn_ended(self, message_id: str) -> bool:
        turn = self._find_turn(message_id)
        if turn is not None:
            return bool(turn.outcome)
        # A queued message dropped by delete will never run.
        return self.deleting and not any(p.message_id == message_id for p in self.state.queue)

    def _events_between(self, first: int, last: int) -> list[Event]:
        return [e for e in self.state.events if first <= e.seq <= last]


def _failed_result(err: ActivityError) -> LLMResult:
    """Turn an activity failure into a failed turn, keeping what the attempt already streamed."""
    cause = err.cause
    details: tuple[object, ...] = ()
    if isinstance(cause, (ApplicationError, CancelledError)):
        details = tuple(cause.details)
    elif isinstance(cause, TimeoutError):
        details = tuple(cause.last_heartbeat_details)
    pieces = [StreamPiece(**p) if isinstance(p, dict) else p for p in _first_list(details)]
    if isinstance(cause, CancelledError):
        return LLMResult(CANCELLED, pieces, "CANCELLED", "turn cancelled")
    code = cause.type if isinstance(cause, ApplicationError) and cause.type else "LLM_ERROR"
    message = cause.message if isinstance(cause, FailureError) else err.message
    return LLMResult(FAILED, pieces, code, message)


def _first_list(details: tuple[object, ...]) -> list[StreamPiece | dict[str, str]]:
    if details and isinstance(details[0], list):
        return details[0]
    return []

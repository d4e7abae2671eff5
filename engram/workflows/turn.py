"""The turn in progress: what lasts only while the agent answers a message or works on a run.

A turn answers one message (a chat turn: steps until the model answers) or carries an autonomous
run (a run's turn: one step per loop of the workflow, for as long as the run lasts). What it holds
while it runs is private here: the LLM call to cut off or cancel, its rounds of tool use, the
events the next call re-sends, how far its gateway was sent, the notices held back until it ends.
The workflow changes it only through named transitions (start, calling, record, add_round,
interrupt, cancel, end) and asks it questions; the answers that differ between a chat turn and a
run's ("which rounds?", "what user text?", "offer tools?", "the reply?") come from `_Chat` or
`_Run`. Plain, deterministic code with no Temporal in it (the LLM call is anything that can be
cancelled, and time is passed in), so it is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engram.vocabulary import EventKind, Notice, TurnOutcome
from engram.workflows import autonomy, cost, double_texting
from engram.workflows.events import EventLog
from engram.workflows.ledger import TurnLedger
from engram.workflows.prompt import context_budget
from engram.workflows.types import (
    AgentState,
    AnnounceInput,
    Event,
    InFlight,
    LLMResult,
    RunState,
    ToolCall,
    ToolRound,
    Turn,
)

# Rounds of tool use in one chat turn; the last call offers no tools, so the model must answer.
# An agent that only keeps notes needs few; one with tools works through several steps.
MAX_TOOL_ROUNDS = 3
MAX_TOOL_ROUNDS_WITH_TOOLS = 10


class Cancellable(Protocol):
    """The LLM call in progress (an activity handle, in the workflow)."""

    def cancel(self) -> bool: ...


@dataclass
class NextCall:
    """What the turn's next LLM call asks the model."""

    user: str
    rounds: list[ToolRound]
    offer_tools: bool
    # A run's call: the model is offered the run's own tools too.
    autonomous: bool


class TurnInProgress:
    def __init__(self, state: AgentState, log: EventLog) -> None:
        self._state = state
        self._log = log
        self._turn: Turn | None = None
        self._llm_call: Cancellable | None = None
        # Cancel was asked for (the turn may be waiting rather than calling).
        self._cancelling = False
        # The LLM call may be cut off by a new message (interrupt), and was.
        self._interruptible = False
        self._interrupted = False
        # A chat turn's rounds of tool use (a run keeps its own, in its state); the rounds the
        # last call was sent, which its tool calls extend.
        self._rounds: list[ToolRound] = []
        self._asked: list[ToolRound] = []
        # The events the next LLM call re-sends to the gateway.
        self._prelude: list[Event] = []
        # The newest event the turn's gateway was sent (by an LLM call or an announcement).
        self._relayed_through = 0
        # Status notices raised during a chat turn wait here so its events stay contiguous.
        self._deferred: list[tuple[Notice, str]] = []
        if state.run is not None and state.turns and not state.turns[-1].outcome:
            # Continued as new in the middle of a run: its turn is still in progress.
            self._turn = state.turns[-1]

    # --- questions ------------------------------------------------------------------------

    @property
    def current(self) -> Turn | None:
        return self._turn

    @property
    def active(self) -> bool:
        return self._turn is not None

    def is_run(self) -> bool:
        """A run's turn is in progress (its steps are the workflow loop's to take)."""
        return self._turn is not None and self._state.run is not None

    def answers(self, message_id: str) -> bool:
        """The turn in progress is this message's."""
        return self._turn is not None and self._turn.message_id == message_id

    @property
    def cancelling(self) -> bool:
        return self._cancelling

    @property
    def interruptible(self) -> bool:
        """Its LLM call is in progress and may be cut off by a new message."""
        return self._interruptible

    @property
    def prelude(self) -> list[Event]:
        """The turn's events the next LLM call re-sends, so the gateway streams from the start."""
        return self._prelude

    def in_flight(self) -> InFlight | None:
        t = self._turn
        return InFlight(t.message_id, t.reply_to, t.first_seq) if t is not None else None

    def run_cancelled(self) -> bool:
        """A run's turn was cancelled between two steps: it ends before the next."""
        return self.is_run() and self._cancelling

    def limit_reached(self, now: float) -> str:
        """Which bound the run has reached, in words; "" while it may step (and for a chat)."""
        run = self._state.run
        if self._turn is None or run is None:
            return ""
        return autonomy.limit_reached(run, self._state, now)

    def announcement(self) -> AnnounceInput:
        """The turn's events its gateway has not been sent yet."""
        turn = self._live()
        since = max(self._relayed_through, turn.first_seq - 1)
        return AnnounceInput(
            agent_id=self._state.spec.agent_id,
            reply_to=turn.reply_to,
            events=self._log.since(since),
        )

    # --- transitions ----------------------------------------------------------------------

    def start(self, turn: Turn, starts_run: bool, now: float) -> None:
        """`turn` (just recorded by the ledger) is in progress: its user message and the notice
        of what it does, which the first LLM call re-sends. It starts a run, or answers the
        question a run asked, or is a chat turn."""
        self._turn = turn
        self._rounds = []
        self._asked = []
        self._relayed_through = 0
        spec = self._state.spec
        user = self._emit(EventKind.USER_MESSAGE, now, text=turn.user)
        if starts_run:
            self._state.run = autonomy.start(turn, spec, now)
            notice = (Notice.RUN_STARTED, turn.user or spec.goal)
        elif self._state.run is not None:
            # The user answered the run's question: the run goes on, in this turn.
            autonomy.answered(self._state.run, turn.user)
            notice = (Notice.RUN_STARTED, "the run goes on with your answer")
        else:
            notice = (Notice.THINKING, f"model {spec.model}")
        status = self._emit(EventKind.STATUS, now, text=notice[1], code=notice[0])
        self._prelude = [user, status]

    def take_in(self, ledger: TurnLedger, now: float) -> None:
        """Messages waiting to join (double texting) join the turn, after its latest round."""
        double_texting.take_in(ledger, self._log, self._live(), self._kind().held_rounds(), now)

    def next_call(self) -> NextCall:
        call = self._kind().next_call(self._live())
        self._asked = call.rounds
        return call

    def report(self, limit: str, now: float) -> NextCall:
        """The run reached a bound: a notice, and the call asking the model where it got."""
        run = self._run()
        self._emit(EventKind.STATUS, now, text=f"limit reached: {limit}", code=Notice.LIMIT_REACHED)
        autonomy.fold_all(run)
        ask = f"{autonomy.instructions(run)}\n\n{autonomy.REPORT_INSTRUCTIONS.format(limit=limit)}"
        return NextCall(ask, [], offer_tools=False, autonomous=True)

    def calling(self, llm_call: Cancellable, *, interruptible: bool) -> None:
        self._llm_call = llm_call
        self._interruptible = interruptible

    def record(self, result: LLMResult, now: float, *, step: bool = True) -> None:
        """The LLM call's streamed pieces, as the turn's events; its tokens, counted (a run's
        `step` counts one step too). The gateway has been sent everything so far."""
        turn = self._live()
        self._interruptible = False
        for piece in result.pieces:
            self._emit(EventKind(piece.kind), now, text=piece.text, code=piece.code, at=piece.at)
        turn.tokens += result.tokens
        cost.spent(self._state, turn, result)
        self._state.tools_refused |= result.tools_refused
        self._relayed_through = self._state.next_seq - 1
        run = self._state.run
        if run is not None:
            run.steps += step
            run.tokens += result.tokens

    def cut_off(self, result: LLMResult, now: float) -> bool:
        """Whether a new message cut the call off (interrupt): its partial text is not part of
        the conversation, and the turn goes on to take the message in."""
        if not self._interrupted:
            return False
        self._interrupted = False
        if result.outcome != TurnOutcome.CANCELLED or self._cancelling:
            return False
        self._emit(EventKind.STATUS, now, text="cut off by a new message", code=Notice.INTERRUPTED)
        return True

    def add_round(
        self, text: str, calls: list[ToolCall], outputs: list[str], events: list[Event]
    ) -> None:
        """The tool calls the last LLM call asked for were made: the next call is sent them, and
        re-sends their `events`."""
        self._prelude = events
        self._asked.append(ToolRound(text, calls, outputs))

    def interrupt(self) -> None:
        """Cut off the LLM call in progress (a new message came, and the policy is interrupt)."""
        assert self._interruptible and self._llm_call is not None
        self._interrupted = True
        self._llm_call.cancel()

    def cancel(self) -> bool:
        """Cancel the turn in progress, whatever it does; whether there is one (then whatever
        tool it runs must be cancelled too)."""
        if self._turn is None:
            return False
        self._cancelling = True
        if self._llm_call is not None:
            self._llm_call.cancel()
        return True

    def relay_to(self, message_id: str, reply_to: str) -> None:
        """A client follows the turn from another gateway: stream there from now on."""
        if self._turn is not None and self._turn.message_id == message_id:
            self._turn.reply_to = reply_to

    def status(self, status: Notice, text: str, now: float) -> None:
        """A status notice as part of the turn in progress, at once (the turn waits on it)."""
        self._emit(EventKind.STATUS, now, text=text, code=status)

    def announced(self) -> None:
        self._relayed_through = self._state.next_seq - 1

    def notice(self, status: Notice, text: str, now: float) -> None:
        """A status notice now, or after the chat turn in progress so its events stay together.
        A run's turn may last days: notices during it are part of it, at once."""
        if self._turn is None:
            self._log.notice(status, text, now=now)
            self._state.updated_at = now
        elif self._state.run is not None:
            self._log.notice(status, text, now=now, message_id=self._turn.message_id)
            self._state.updated_at = now
        else:
            self._deferred.append((status, text))

    def end(
        self, result: LLMResult, now: float, finished: autonomy.Finished | None = None
    ) -> list[tuple[Notice, str]]:
        """The turn ends as `result` says (with `finished`'s answer or question, for a run):
        its final answer or error, the agent's totals. The notices held back meanwhile, for the
        caller to raise now."""
        turn = self._live()
        kind = self._kind()
        turn.ended_at = now
        turn.outcome = result.outcome
        if result.outcome == TurnOutcome.COMPLETED:
            turn.reply = finished.answer if finished is not None else kind.reply(result)
            event = self._emit(EventKind.FINAL_ANSWER, now, text=turn.reply)
            if finished is not None and finished.structured is not None:
                event.structured = finished.structured
        else:
            turn.error = result.error_message
            self._emit(EventKind.ERROR, now, text=result.error_message, code=result.error_code)
        turn.last_seq = self._state.next_seq - 1
        self._state.tokens_used += turn.tokens
        self._state.busy_seconds += turn.ended_at - turn.started_at
        kind.ended(turn, finished, self._cancelling)
        self._turn = None
        self._llm_call = None
        self._cancelling = False
        held, self._deferred = self._deferred, []
        return held

    # --- helpers --------------------------------------------------------------------------

    def _live(self) -> Turn:
        if self._turn is None:
            raise RuntimeError("no turn is in progress")
        return self._turn

    def _run(self) -> RunState:
        if self._state.run is None:
            raise RuntimeError("no run is in progress")
        return self._state.run

    def _kind(self) -> _Chat | _Run:
        run = self._state.run
        return _Run(self._state, run) if run is not None else _Chat(self._state, self._rounds)

    def _emit(
        self, kind: EventKind, now: float, *, text: str = "", code: str = "", at: float = 0.0
    ) -> Event:
        event = self._log.emit(
            kind=kind, text=text, code=code, message_id=self._live().message_id, now=at or now
        )
        self._state.updated_at = now
        return event


class _Chat:
    """A turn answering one message: its rounds of tool use last as long as it does."""

    def __init__(self, state: AgentState, rounds: list[ToolRound]) -> None:
        self.state = state
        self.rounds = rounds

    def held_rounds(self) -> list[ToolRound]:
        return self.rounds

    def next_call(self, turn: Turn) -> NextCall:
        max_rounds = MAX_TOOL_ROUNDS_WITH_TOOLS if self.state.tools else MAX_TOOL_ROUNDS
        offer_tools = not self.state.tools_refused and len(self.rounds) < max_rounds
        return NextCall(turn.user, self.rounds, offer_tools, autonomous=False)

    def reply(self, result: LLMResult) -> str:
        """What the model said over the whole turn, before its tool calls and after them."""
        return "".join(r.text for r in self.rounds) + result.reply

    def ended(self, turn: Turn, finished: autonomy.Finished | None, cancelling: bool) -> None:
        pass


class _Run:
    """A run's turn: its rounds and counts live in the run's state, carried by continue-as-new."""

    def __init__(self, state: AgentState, run: RunState) -> None:
        self.state = state
        self.run = run

    def held_rounds(self) -> list[ToolRound]:
        return self.run.rounds

    def next_call(self, turn: Turn) -> NextCall:
        rounds = autonomy.recent_rounds(self.run, context_budget(self.state.spec))
        return NextCall(autonomy.instructions(self.run), rounds, offer_tools=True, autonomous=True)

    def reply(self, result: LLMResult) -> str:
        return result.reply

    def ended(self, turn: Turn, finished: autonomy.Finished | None, cancelling: bool) -> None:
        """The run stops for the user's answer (ask_user), or is over."""
        self.state.run_turns += turn.outcome == TurnOutcome.COMPLETED
        if finished is not None and finished.asks_user and not cancelling:
            self.run.waiting_for_user = True
        else:
            self.state.run_steps += self.run.steps
            self.state.run = None

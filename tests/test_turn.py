"""The turn in progress on its own: its transitions, and what a chat turn and a run's answer."""

from __future__ import annotations

from engram.vocabulary import DoubleTexting, EventKind, Notice, TurnOutcome
from engram.workflows.autonomy import Finished
from engram.workflows.events import EventLog
from engram.workflows.ledger import TurnLedger
from engram.workflows.turn import MAX_TOOL_ROUNDS, TurnInProgress
from engram.workflows.types import (
    AgentSpec,
    AgentState,
    LLMResult,
    RunState,
    StreamPiece,
    ToolCall,
    Turn,
)


class FakeCall:
    """An LLM call that records being cancelled."""

    def __init__(self) -> None:
        self.cancelled = 0

    def cancel(self) -> bool:
        self.cancelled += 1
        return True


class Agent:
    def __init__(self, **config: object) -> None:
        spec = AgentSpec(agent_id="a", goal="Ship it.", model="m", config=dict(config))
        self.state = AgentState(spec=spec, created_at=0)
        self.log = EventLog(self.state)
        self.ledger = TurnLedger(self.state)
        self.turn = TurnInProgress(self.state, self.log)

    def start(
        self, message_id: str, text: str, *, starts_run: bool = False, now: float = 1.0
    ) -> Turn:
        self.ledger.enqueue(message_id, text, "gw:1", starts_run=starts_run)
        starts = self.ledger.next_starts_run()
        turn = self.ledger.start_next(self.state.next_seq, now)
        self.turn.start(turn, starts, now)
        return turn

    def kinds(self) -> list[tuple[str, str]]:
        return [(e.kind, e.code) for e in self.state.events]


def answer(text: str, tokens: int = 3) -> LLMResult:
    pieces = [StreamPiece(kind=EventKind.TEXT, text=text)] if text else []
    return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=pieces, tokens=tokens)


def cancelled() -> LLMResult:
    return LLMResult(outcome=TurnOutcome.CANCELLED, pieces=[])


def test_a_chat_turn_from_start_to_end() -> None:
    agent = Agent()
    turn = agent.start("m1", "hello", now=1.0)
    assert agent.turn.active and agent.turn.answers("m1") and not agent.turn.is_run()
    assert agent.kinds() == [(EventKind.USER_MESSAGE, ""), (EventKind.STATUS, Notice.THINKING)]
    assert agent.turn.prelude == agent.state.events
    call = agent.turn.next_call()
    assert (call.user, call.rounds, call.offer_tools, call.autonomous) == ("hello", [], True, False)
    agent.turn.calling(FakeCall(), interruptible=True)
    agent.turn.record(answer("Let me note that. "), now=2.0)
    assert not agent.turn.interruptible and turn.tokens == 3
    agent.turn.add_round("Let me note that. ", [ToolCall("c1", "remember", "{}")], ["saved"], [])
    assert agent.turn.prelude == []
    assert agent.turn.next_call().rounds[0].results == ["saved"]
    agent.turn.record(answer("Done."), now=3.0)
    assert agent.turn.end(answer("Done."), now=4.0) == []
    assert (turn.outcome, turn.reply, turn.ended_at) == (
        "completed",
        "Let me note that. Done.",
        4.0,
    )
    assert agent.state.events[-1].kind == EventKind.FINAL_ANSWER
    assert turn.last_seq == agent.state.events[-1].seq
    assert agent.state.tokens_used == 6 and agent.state.busy_seconds == 3.0
    assert not agent.turn.active and agent.turn.in_flight() is None


def test_a_chat_turn_stops_offering_tools_after_its_rounds() -> None:
    agent = Agent()
    agent.start("m1", "hello")
    for _ in range(MAX_TOOL_ROUNDS):
        assert agent.turn.next_call().offer_tools
        agent.turn.add_round("", [], [], [])
    assert not agent.turn.next_call().offer_tools
    agent.state.tools_refused = True
    agent.turn.end(answer("ok"), now=2.0)
    agent.start("m2", "again")
    assert not agent.turn.next_call().offer_tools  # a model that refused tools is not offered any


def test_a_failed_turn_records_its_error() -> None:
    agent = Agent()
    turn = agent.start("m1", "hello")
    failed = LLMResult(
        outcome=TurnOutcome.FAILED, pieces=[], error_code="LLM_HTTP_500", error_message="down"
    )
    agent.turn.end(failed, now=2.0)
    assert (turn.outcome, turn.error, turn.reply) == ("failed", "down", "")
    assert agent.kinds()[-1] == (EventKind.ERROR, "LLM_HTTP_500")


def test_cancel_reaches_the_llm_call_and_ends_with_the_turn() -> None:
    agent = Agent()
    assert not agent.turn.cancel()  # nothing in progress
    agent.start("m1", "hello")
    call = FakeCall()
    agent.turn.calling(call, interruptible=False)
    assert agent.turn.cancel() and agent.turn.cancelling and call.cancelled == 1
    agent.turn.record(cancelled(), now=2.0)
    assert not agent.turn.cut_off(cancelled(), now=2.0)  # a cancel is no interruption
    agent.turn.end(cancelled(), now=2.0)
    assert not agent.turn.cancelling and not agent.turn.cancel()


def test_an_interrupted_call_is_cut_off_once() -> None:
    agent = Agent()
    agent.start("m1", "write an essay")
    call = FakeCall()
    agent.turn.calling(call, interruptible=True)
    agent.turn.interrupt()
    assert call.cancelled == 1
    agent.turn.record(cancelled(), now=2.0)
    assert agent.turn.cut_off(cancelled(), now=2.0)
    assert agent.kinds()[-1] == (EventKind.STATUS, Notice.INTERRUPTED)
    assert not agent.turn.cut_off(cancelled(), now=2.0)


def test_an_interrupted_call_that_was_cancelled_too_is_not_cut_off() -> None:
    agent = Agent()
    agent.start("m1", "write an essay")
    agent.turn.calling(FakeCall(), interruptible=True)
    agent.turn.interrupt()
    agent.turn.cancel()
    agent.turn.record(cancelled(), now=2.0)
    assert not agent.turn.cut_off(cancelled(), now=2.0)
    assert Notice.INTERRUPTED not in [code for _, code in agent.kinds()]


def test_notices_wait_for_a_chat_turn_but_not_for_a_run() -> None:
    agent = Agent()
    agent.turn.notice(Notice.PAUSED, "paused", now=1.0)
    assert agent.state.events[-1].message_id == "" and agent.state.updated_at == 1.0
    agent.start("m1", "hello")
    before = len(agent.state.events)
    agent.turn.notice(Notice.EDITED, "edited goal", now=2.0)
    assert len(agent.state.events) == before
    assert agent.turn.end(answer("hi"), now=3.0) == [(Notice.EDITED, "edited goal")]
    agent.start("r1", "", starts_run=True)
    agent.turn.notice(Notice.EDITED, "edited goal", now=4.0)
    assert (agent.state.events[-1].code, agent.state.events[-1].message_id) == ("edited", "r1")


def test_a_run_steps_asks_and_goes_on_with_the_answer() -> None:
    agent = Agent()
    turn = agent.start("r1", "Check twice.", starts_run=True, now=1.0)
    run = agent.state.run
    assert run is not None and agent.turn.is_run()
    assert (agent.kinds()[-1], agent.state.events[-1].text) == (
        (EventKind.STATUS, Notice.RUN_STARTED),
        "Check twice.",
    )
    call = agent.turn.next_call()
    assert call.autonomous and call.offer_tools and "Check twice." in call.user
    agent.turn.record(answer("", tokens=5), now=2.0)
    assert (run.steps, run.tokens) == (1, 5)
    agent.turn.add_round("", [ToolCall("c1", "ask_user", "{}")], ["asked"], [])
    assert run.rounds[-1].results == ["asked"]
    asked = Finished("Ship it?", asks_user=True)
    agent.turn.end(answer(""), now=3.0, finished=asked)
    assert (turn.reply, turn.outcome) == ("Ship it?", "completed")
    assert agent.state.run is run and run.waiting_for_user and not agent.turn.active
    assert agent.state.run_turns == 1 and agent.state.run_steps == 0
    agent.start("m2", "Yes.")
    assert agent.turn.is_run() and not run.waiting_for_user
    assert run.rounds[-1].results == ["The user answered: Yes."]
    agent.turn.end(answer("", tokens=0), now=4.0, finished=Finished("Shipped.", {"ok": True}))
    assert agent.state.run is None and agent.state.run_steps == 1
    assert agent.state.events[-1].structured == {"ok": True}


def test_a_run_at_its_limit_reports() -> None:
    agent = Agent(maxSteps=1)
    assert agent.turn.limit_reached(now=0) == ""
    agent.start("r1", "Go.", starts_run=True)
    assert agent.turn.limit_reached(now=2.0) == ""
    agent.turn.next_call()
    agent.turn.record(answer("", tokens=2), now=2.0)
    agent.turn.add_round("", [ToolCall("c1", "remember", "{}")], ["saved"], [])
    limit = agent.turn.limit_reached(now=3.0)
    assert limit == "1 steps"
    report = agent.turn.report(limit, now=3.0)
    assert agent.kinds()[-1] == (EventKind.STATUS, Notice.LIMIT_REACHED)
    assert (report.rounds, report.offer_tools) == ([], False) and "limit" in report.user
    assert agent.state.run is not None and agent.state.run.earlier
    agent.turn.record(answer("Got halfway.", tokens=4), now=4.0, step=False)
    assert (agent.state.run.steps, agent.state.run.tokens) == (1, 6)
    agent.turn.end(answer("Got halfway."), now=4.0)
    assert agent.state.run is None


def test_a_cancelled_run_ends_before_its_next_step() -> None:
    agent = Agent()
    agent.start("r1", "Go.", starts_run=True)
    assert not agent.turn.run_cancelled()
    agent.turn.cancel()
    assert agent.turn.run_cancelled()


def test_a_run_continued_as_new_mid_turn_is_still_in_progress() -> None:
    agent = Agent()
    agent.start("r1", "Go.", starts_run=True)
    again = TurnInProgress(agent.state, agent.log)
    assert again.active and again.is_run() and again.answers("r1")
    chat = Agent()
    chat.start("m1", "hello")
    assert not TurnInProgress(chat.state, chat.log).active  # a chat turn never continues as new


def test_messages_taken_in_join_after_the_latest_round() -> None:
    agent = Agent(doubleTexting=DoubleTexting.STEER)
    host = agent.start("m1", "write")
    agent.turn.add_round("", [ToolCall("c1", "remember", "{}")], ["saved"], [])
    agent.ledger.enqueue("m2", "be brief")
    agent.turn.take_in(agent.ledger, now=2.0)
    assert host.added == ["be brief"] and not agent.state.queue
    assert agent.turn.next_call().rounds[-1].then == ["be brief"]
    assert [t.message_id for t in agent.state.turns] == ["m2", "m1"]


def test_the_gateway_is_sent_what_it_has_not_seen() -> None:
    agent = Agent()
    turn = agent.start("m1", "hello")
    assert [e.seq for e in agent.turn.announcement().events] == [1, 2]
    agent.turn.record(answer("hi"), now=2.0)
    agent.log.notice(Notice.AWAITING_APPROVAL, "approve?", now=2.0, message_id="m1")
    announcement = agent.turn.announcement()
    assert [e.seq for e in announcement.events] == [4] and announcement.reply_to == "gw:1"
    agent.turn.announced()
    assert agent.turn.announcement().events == []
    agent.turn.relay_to("other", "gw:9")
    assert turn.reply_to == "gw:1"
    agent.turn.relay_to("m1", "gw:2")
    in_flight = agent.turn.in_flight()
    assert in_flight is not None and (in_flight.message_id, in_flight.reply_to) == ("m1", "gw:2")


def test_a_new_turn_starts_afresh() -> None:
    agent = Agent()
    agent.start("m1", "hello")
    agent.turn.add_round("", [], [], [])
    agent.turn.end(answer("hi"), now=2.0)
    agent.start("m2", "again")
    assert agent.turn.next_call().rounds == []
    assert [e.seq for e in agent.turn.announcement().events] == [
        e.seq for e in agent.state.events if e.message_id == "m2"
    ]


def test_a_run_state_alone_is_no_turn_in_progress() -> None:
    agent = Agent()
    agent.state.run = RunState(run_id="r1", instructions="", started_at=0, waiting_for_user=True)
    assert not agent.turn.is_run() and agent.turn.limit_reached(now=1.0) == ""

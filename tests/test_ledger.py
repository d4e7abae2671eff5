"""The turn ledger on its own: what is queued, recorded, ended, and what retry runs."""

from __future__ import annotations

import pytest

from engram.vocabulary import TurnOutcome
from engram.workflows.ledger import NothingToRetry, TurnLedger
from engram.workflows.types import AgentSpec, AgentState, Turn


def ledger() -> TurnLedger:
    return TurnLedger(AgentState(spec=AgentSpec(agent_id="a", goal="", model="m"), created_at=0))


def run(ledger: TurnLedger, outcome: TurnOutcome) -> str:
    turn = ledger.start_next(first_seq=len(ledger.state.turns) * 10 + 1, now=1.0)
    turn.outcome = outcome
    return turn.message_id


def test_a_message_is_queued_then_running_then_ended() -> None:
    book = ledger()
    assert not book.is_known("m1")
    assert book.enqueue("m1", "hello")
    assert book.is_queued("m1") and book.is_known("m1") and book.find("m1") is None
    assert not book.has_ended("m1") and book.ready()
    turn = book.start_next(first_seq=7, now=2.5)
    assert (turn.message_id, turn.user, turn.first_seq, turn.started_at) == ("m1", "hello", 7, 2.5)
    assert not book.is_queued("m1") and book.find("m1") is turn and not book.has_ended("m1")
    turn.outcome = TurnOutcome.COMPLETED
    assert book.has_ended("m1") and not book.ready()


def test_a_resend_makes_no_second_turn() -> None:
    book = ledger()
    assert book.enqueue("m1", "hello")
    assert not book.enqueue("m1", "hello again")
    run(book, TurnOutcome.COMPLETED)
    assert not book.enqueue("m1", "hello")
    assert [p.message_id for p in book.state.queue] == []
    assert len(book.state.turns) == 1


def test_queue_order_and_pause() -> None:
    book = ledger()
    for i in range(3):
        book.enqueue(f"m{i}", str(i))
    book.state.paused = True
    assert not book.ready()
    book.state.paused = False
    assert [book.start_next(first_seq=i, now=0).message_id for i in range(3)] == ["m0", "m1", "m2"]


def test_retry_ids_count_up_from_the_failed_turn() -> None:
    book = ledger()
    with pytest.raises(NothingToRetry):
        book.enqueue_retry()
    book.enqueue("m", "hi")
    run(book, TurnOutcome.COMPLETED)
    with pytest.raises(NothingToRetry):
        book.enqueue_retry()
    book.enqueue("x", "boom")
    run(book, TurnOutcome.FAILED)
    assert book.last_failed() is not None and book.enqueue_retry() == "x#retry1"
    run(book, TurnOutcome.CANCELLED)
    # The newest failed turn is the retry itself, so the next retry numbers after it.
    assert book.enqueue_retry() == "x#retry1#retry1"
    assert book.state.queue[-1].content == "boom"


def test_delete_ends_what_was_queued() -> None:
    book = ledger()
    book.enqueue("m1", "a")
    book.enqueue("m2", "b")
    run(book, TurnOutcome.COMPLETED)  # m1
    assert not book.has_ended("m2")
    book.deleting = True
    assert not book.has_ended("m2")  # still queued: the run loop drops it
    book.drop_queue()
    assert book.has_ended("m2") and book.has_ended("m1")


def test_forgetting_the_oldest_turns_keeps_the_counts() -> None:
    book = ledger()
    for outcome in (TurnOutcome.COMPLETED, TurnOutcome.FAILED, TurnOutcome.COMPLETED):
        book.enqueue(f"m{len(book.state.turns)}", "x")
        run(book, outcome)
    assert book.completed_turns() == 2
    old = book.forget_oldest(2)
    assert [t.message_id for t in old] == ["m0", "m1"]
    assert book.state.archived_turns == 2 and book.state.archived_completed_turns == 1
    assert book.completed_turns() == 2 and book.find("m0") is None


def test_two_retries_asked_while_paused_are_two_turns() -> None:
    book = ledger()
    book.enqueue("x", "boom")
    run(book, TurnOutcome.FAILED)
    book.state.paused = True
    assert book.enqueue_retry() == "x#retry1"
    assert book.enqueue_retry() == "x#retry2"
    assert [p.message_id for p in book.state.queue] == ["x#retry1", "x#retry2"]


def test_a_run_is_queued_as_one() -> None:
    book = ledger()
    book.enqueue("m1", "hello")
    assert not book.run_queued() and not book.next_starts_run()
    assert book.enqueue("r1", "work on it", "gw:1", starts_run=True)
    assert not book.enqueue("r1", "again", starts_run=True)
    assert book.run_queued() and not book.next_starts_run()
    book.start_next(first_seq=1, now=0)
    assert book.next_starts_run()
    assert [(p.message_id, p.starts_run) for p in book.state.queue] == [("r1", True)]


def test_a_joined_message_ends_before_the_turn_it_joined() -> None:
    book = ledger()
    book.enqueue("host", "write an essay")
    host = book.start_next(first_seq=1, now=1.0)
    book.enqueue("m2", "no, a haiku", "gw:2")
    book.enqueue("m3", "and be brief")
    joined = book.join(host, book.state.queue[0], first_seq=5, last_seq=6, now=2.0)
    assert (joined.message_id, joined.outcome, joined.joined_to) == ("m2", "joined", "host")
    assert (joined.first_seq, joined.last_seq, joined.reply_to) == (5, 6, "gw:2")
    assert [t.message_id for t in book.state.turns] == ["m2", "host"]
    assert host.added == ["no, a haiku"] and not host.outcome
    assert [p.message_id for p in book.state.queue] == ["m3"]
    assert book.has_ended("m2") and book.find("m2") is joined and book.completed_turns() == 0


def test_only_the_oldest_message_joins_only_the_turn_in_progress() -> None:
    book = ledger()
    book.enqueue("host", "a")
    host = book.start_next(first_seq=1, now=0)
    book.enqueue("m2", "b")
    book.enqueue("m3", "c")
    with pytest.raises(ValueError, match="oldest"):
        book.join(host, book.state.queue[1], 2, 3, now=0)
    with pytest.raises(ValueError, match="in progress"):
        book.join(Turn(message_id="other", user=""), book.state.queue[0], 2, 3, now=0)
    assert [p.message_id for p in book.state.queue] == ["m2", "m3"]
    assert book.state.turns == [host] and not host.added

"""The stream merge on its own: a scripted live feed and durable record, checked for validity.

Every scenario is checked against the same rules: sequence ids strictly increasing, every message
as the record has it, a Chat stream carrying exactly its own turn's messages (and nothing it was
already sent), the turn ending with its final answer or error.
"""

from __future__ import annotations

import asyncio
import random

from engram.gateway.token_hub import TurnFeed
from engram.gateway.turn_stream import Messages, TurnMerge, follow_turn
from engram.v1 import agent_pb2

AGENT = "00000000-0000-0000-0000-000000000001"


def message(seq: int, kind: str, message_id: str = "m", text: str = "") -> agent_pb2.ServerMessage:
    msg = agent_pb2.ServerMessage(agent_id=AGENT, sequence_id=seq, message_id=message_id)
    if kind == "user":
        msg.user_message.content = text or "hello"
    elif kind == "status":
        msg.status.status, msg.status.message = text or "thinking", "model x"
    elif kind == "text":
        msg.text.content = text or f"tok{seq} "
    elif kind == "final":
        msg.final_answer.content = text or "answer"
    elif kind == "error":
        msg.error.code, msg.error.message = "LLM_ERROR", text or "failed"
    return msg


def turn(first: int, tokens: int, message_id: str = "m", end: str = "final") -> Messages:
    """A turn's record: user message, thinking, `tokens` texts, final answer (or error)."""
    seq = first
    out = [message(seq, "user", message_id), message(seq + 1, "status", message_id)]
    out += [message(seq + 2 + i, "text", message_id) for i in range(tokens)]
    out.append(message(seq + 2 + tokens, end, message_id))
    return out


def check(sent: Messages, record: Messages, after: int | None, message_id: str = "m") -> None:
    seqs = [m.sequence_id for m in sent]
    assert seqs == sorted(set(seqs)), f"not strictly increasing: {seqs}"
    by_seq = {m.sequence_id: m for m in record}
    assert all(m == by_seq[m.sequence_id] for m in sent), "a message differs from the record"
    expected = [m for m in record if m.message_id == message_id and m.sequence_id > (after or 0)]
    assert sent == expected
    if expected:
        assert sent[-1].WhichOneof("payload") in ("final_answer", "error")


def run(
    merge: TurnMerge,
    live_batches: list[Messages],
    record: Messages,
    *,
    record_after_batch: int,
    stored: Messages | None = None,
) -> tuple[Messages, list[int]]:
    """Drive follow_turn: live batches arrive one by one, the record after `record_after_batch`."""
    feed = TurnFeed()
    fills: list[int] = []

    async def main() -> Messages:
        recorded: asyncio.Future[Messages] = asyncio.get_running_loop().create_future()

        async def stored_since(seq: int) -> Messages:
            fills.append(seq)
            return [m for m in (stored or []) if m.sequence_id > seq]

        async def producer() -> None:
            for i, batch in enumerate(live_batches):
                # follow_turn drops the record when the live feed alone completed the turn.
                if i == record_after_batch and not recorded.done():
                    recorded.set_result(record)
                await feed.put(batch)
                await asyncio.sleep(0)
            if not recorded.done():
                recorded.set_result(record)

        task = asyncio.ensure_future(producer())
        sent = [m async for m in follow_turn(merge, feed, recorded, stored_since)]
        await task
        return sent

    return asyncio.run(main()), fills


def test_live_in_order_then_record() -> None:
    record = turn(5, 6)
    sent, _ = run(
        TurnMerge("m", after=None), [record[:3], record[3:]], record, record_after_batch=9
    )
    check(sent, record, None)


def test_gaps_in_the_live_feed_are_filled_by_the_record() -> None:
    record = turn(5, 8)
    live = [m for m in record if m.sequence_id not in (8, 11)]
    merge = TurnMerge("m", after=None)
    merge.add(live)
    early = merge.take()
    assert [m.sequence_id for m in early] == [5, 6, 7]  # stops at the gap, sends nothing past it
    assert not merge.done
    merge.complete(record)
    check(early + merge.take(), record, None)
    assert merge.done


def test_duplicates_are_sent_once_and_the_first_copy_wins() -> None:
    record = turn(1, 5)
    merge = TurnMerge("m", after=None)
    merge.add(record[:4])
    # A stray copy of a sent sequence id changes nothing; a retried attempt re-sends the rest.
    merge.add([message(3, "text", text="stale"), *record[2:6]])
    sent = merge.take()
    assert [m.sequence_id for m in sent] == [1, 2, 3, 4, 5, 6]
    merge.add(record)
    merge.complete(record)
    sent += merge.take()
    check(sent, record, None)


def test_a_retried_attempt_continues_the_numbering() -> None:
    first_try = [message(1, "user"), message(2, "status"), message(3, "text"), message(4, "text")]
    restart = message(5, "status", text="restarting")
    second_try = [message(6, "text"), message(7, "text"), message(8, "final")]
    record = [*first_try, restart, *second_try]
    sent, _ = run(
        TurnMerge("m", after=None),
        [first_try, first_try[2:], [restart, *second_try]],
        record,
        record_after_batch=3,
    )
    check(sent, record, None)


def test_a_turn_that_ends_while_the_feed_is_behind() -> None:
    record = turn(10, 20)
    sent, _ = run(TurnMerge("m", after=None), [record[:3]], record, record_after_batch=1)
    check(sent, record, None)


def test_nothing_live_at_all() -> None:
    record = turn(3, 4, end="error")
    sent, _ = run(TurnMerge("m", after=None), [], record, record_after_batch=0)
    check(sent, record, None)


def test_a_chat_stream_carries_only_its_own_turn() -> None:
    # Another client's turn (seqs 5-9) ran between this stream's previous turn (ending at 4)
    # and this one: the stream skips it rather than filling the gap from the agent's record.
    others = turn(5, 2, message_id="bob")
    record = turn(10, 3, message_id="alice")
    sent, fills = run(
        TurnMerge("alice", after=4),
        [others, record[:2], record[2:]],
        record,
        record_after_batch=3,
        stored=others + record,
    )
    check(sent, record, 4, message_id="alice")
    assert fills == []
    assert sent[0].sequence_id == 10


def test_replay_fills_the_gap_before_the_turn_from_the_store() -> None:
    before = [message(3, "status", message_id="", text="paused"), *turn(4, 1, message_id="x")]
    record = turn(8, 3)
    sent, fills = run(
        TurnMerge("m", after=2, everything=True),
        [record],
        record,
        record_after_batch=1,
        stored=before + record,
    )
    assert fills == [2]
    assert [m.sequence_id for m in sent] == list(range(3, 8 + len(record)))
    assert sent[-1].HasField("final_answer")


def test_a_resent_turn_already_sent_on_this_stream_sends_nothing() -> None:
    record = turn(1, 3)
    sent, _ = run(
        TurnMerge("m", after=record[-1].sequence_id), [record], record, record_after_batch=1
    )
    assert sent == []


def test_random_feeds_always_give_a_valid_stream() -> None:
    rng = random.Random(20261125)
    for _ in range(300):
        first = rng.randint(1, 50)
        record = turn(first, rng.randint(0, 30), end=rng.choice(["final", "error"]))
        live = [m for m in record if rng.random() > 0.2]  # drops
        live += rng.sample(live, k=len(live) // 4)  # repeats
        rng.shuffle(live)
        cuts = sorted(rng.sample(range(len(live) + 1), k=min(3, len(live) + 1)))
        batches = [live[a:b] for a, b in zip([0, *cuts], [*cuts, len(live)], strict=True)]
        after = rng.choice([None, None, first - 1, first + 2, record[-1].sequence_id])
        merge = TurnMerge("m", after=after)
        sent, _ = run(merge, batches, record, record_after_batch=rng.randint(0, len(batches)))
        check(sent, record, after)
        assert merge.done

"""Chat streams: streaming, ordering, replay, idempotent resends, many agents at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import (
    chat,
    chat_in_background,
    create_agent,
    finals,
    text_of,
    unique,
    user_message,
)
from tests.fake_llm import FakeLLM, tokens_of


def assert_contiguous(messages: list[agent_pb2.ServerMessage]) -> None:
    seqs = [m.sequence_id for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def test_turn_shape(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    agent_id = create_agent(stub)
    content = unique("hello there")
    messages = chat(stub, agent_id, content)
    kinds = [m.WhichOneof("payload") for m in messages]
    assert kinds[:2] == ["user_message", "status"]
    assert messages[0].user_message.content == content
    assert messages[1].status.status == "thinking"
    assert set(kinds[2:-1]) == {"text"} and kinds[-1] == "final_answer"
    assert messages[0].sequence_id == 1
    assert_contiguous(messages)
    assert finals(messages) == [text_of(messages)] == [f"You said: {content}"]
    assert {m.agent_id for m in messages} == {agent_id}
    assert len({m.message_id for m in messages}) == 1


def test_tokens_stream_before_generation_ends(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.1
    llm.reply = lambda _: "word " * 20  # about two seconds of generation
    agent_id = create_agent(stub)
    start = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    for message in stub.Chat(iter([user_message(agent_id, "stream please")]), timeout=30):
        arrivals.append((time.monotonic() - start, message.WhichOneof("payload") or ""))
    first_text = next(t for t, kind in arrivals if kind == "text")
    last = arrivals[-1][0]
    assert last > 1.8
    assert first_text < 0.5, arrivals
    # Tokens arrive spread over the generation, not in one burst at the end.
    texts = [t for t, kind in arrivals if kind == "text"]
    assert texts[len(texts) // 2] < last - 0.5


def test_long_fast_reply_is_complete(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    reply = "".join(f"t{i} " for i in range(2000))
    llm.reply = lambda _: reply
    messages = chat(stub, create_agent(stub), "a long answer, fast")
    assert text_of(messages) == reply
    # The model outruns the path to the client: its tokens go out coalesced, fewer messages than
    # tokens, with contiguous sequence ids and nothing lost.
    texts = sum(1 for m in messages if m.HasField("text"))
    assert 1 <= texts < len(tokens_of(reply)) / 2
    assert_contiguous(messages)


def test_several_messages_on_one_stream_answered_in_order(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.01
    agent_id = create_agent(stub)
    contents = [unique(f"message {i}") for i in range(3)]
    messages = chat(stub, agent_id, *contents)
    assert finals(messages) == [f"You said: {c}" for c in contents]
    assert_contiguous(messages)
    # Each turn sees the turns before it.
    last_request = llm.requests_for(contents[2])[-1]["messages"]
    assert [m["content"] for m in last_request if m["role"] == "user"] == contents


def test_messages_sent_while_a_turn_streams_queue_behind_it(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.05
    agent_id = create_agent(stub)
    first, second = unique("first"), unique("second")
    sent_second = threading.Event()

    def requests() -> object:
        yield user_message(agent_id, first)
        time.sleep(0.3)  # the first turn is streaming now
        yield user_message(agent_id, second)
        sent_second.set()

    messages = list(stub.Chat(requests(), timeout=30))
    assert sent_second.is_set()
    assert finals(messages) == [f"You said: {first}", f"You said: {second}"]
    assert_contiguous(messages)


def test_replay_returns_exactly_the_messages_after(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    streamed = chat(stub, agent_id, unique("one"), unique("two"))
    for start in (0, 1, 5, streamed[-1].sequence_id - 1, streamed[-1].sequence_id):
        replayed = list(
            stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, from_sequence=start), timeout=10)
        )
        expected = [m for m in streamed if m.sequence_id > start]
        assert [(m.sequence_id, m.WhichOneof("payload")) for m in replayed] == [
            (m.sequence_id, m.WhichOneof("payload")) for m in expected
        ]
        assert text_of(replayed) == text_of(expected)
    everything = list(
        stub.Replay(
            agent_pb2.ReplayRequest(agent_id=agent_id, from_sequence=9, include_history=True),
            timeout=10,
        )
    )
    assert [m.sequence_id for m in everything] == [m.sequence_id for m in streamed]


def test_replay_follows_the_turn_in_progress(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.05
    llm.reply = lambda _: "slow " * 30
    agent_id = create_agent(stub)
    reader = chat_in_background(stub, agent_id, "go")
    reader.wait_for_texts(1)
    replayed = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, from_sequence=3)))
    assert reader.done.wait(30)
    assert [m.sequence_id for m in replayed] == [
        m.sequence_id for m in reader.messages if m.sequence_id > 3
    ]
    assert replayed[-1].final_answer.content == "slow " * 30


def test_resend_with_same_message_id_returns_the_same_turn(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    content = unique("only once")
    first = chat(stub, agent_id, content, message_id="client-msg-1")
    again = chat(stub, agent_id, content, message_id="client-msg-1")
    assert [(m.sequence_id, m.WhichOneof("payload")) for m in again] == [
        (m.sequence_id, m.WhichOneof("payload")) for m in first
    ]
    assert finals(again) == finals(first)
    assert len(llm.requests_for(content)) == 1
    history = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [t.message_id for t in history] == ["client-msg-1"]


def test_resend_while_the_turn_is_still_running(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.05
    agent_id = create_agent(stub)
    content = unique("dropped connection")
    first_call = stub.Chat(iter([user_message(agent_id, content, "resend-1")]), timeout=30)
    next(first_call)
    first_call.cancel()  # the connection drops mid-reply
    again = chat(stub, agent_id, content, message_id="resend-1")
    assert finals(again) == [f"You said: {content}"]
    assert again[0].WhichOneof("payload") == "user_message"
    assert len(llm.requests_for(content)) == 1
    history = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert len(history) == 1 and history[0].outcome == "completed"


def test_many_agents_chat_at_once(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    llm.token_delay = 0.01
    agents = [create_agent(stub) for _ in range(8)]

    def converse(agent_id: str) -> list[str]:
        return finals(chat(stub, agent_id, f"hi from {agent_id}", f"bye from {agent_id}"))

    with ThreadPoolExecutor(len(agents)) as pool:
        results = list(pool.map(converse, agents))
    for agent_id, replies in zip(agents, results, strict=True):
        assert replies == [f"You said: hi from {agent_id}", f"You said: bye from {agent_id}"]

"""engram.client against a real engine: typed events, hooks, and a gateway killed mid-reply."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from engram.client import (
    AsyncEngram,
    Decision,
    Engram,
    EngramError,
    Error,
    Event,
    Final,
    Status,
    Text,
    ToolCall,
    ToolResult,
    TurnFailed,
    UserMessage,
)
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import Cluster
from tests.engine import Engine, free_port
from tests.fake_llm import FakeLLM, note_taker

REPLY = "".join(f"w{i} " for i in range(60))


@pytest.fixture
def engram(engine: Engine) -> Iterator[Engram]:
    with Engram(engine.address) as client:
        yield client


@pytest.fixture
def tool_llm(llm: FakeLLM) -> FakeLLM:
    llm.reply = note_taker
    return llm


def assert_one_turn(events: list[Event]) -> None:
    """A whole turn: its input first, its end last, every sequence id once and in order."""
    seqs = [e.sequence_id for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert isinstance(events[0], UserMessage) and isinstance(events[-1], Final | Error)
    assert len({e.message_id for e in events}) == 1


def test_send_streams_typed_events_and_reply_returns_the_answer(engram: Engram) -> None:
    agent = engram.create_agent(model="fake-model", goal="Help.")
    with agent.send("hello there", message_id="m-typed-1") as turn:
        events = list(turn)
    assert_one_turn(events)
    assert events[0] == UserMessage(
        "hello there", sequence_id=events[0].sequence_id, message_id="m-typed-1"
    )
    assert isinstance(events[1], Status) and events[1].status == "thinking"
    assert "".join(e.content for e in events if isinstance(e, Text)) == "You said: hello there"
    assert events[-1] == Final(
        "You said: hello there", sequence_id=events[-1].sequence_id, message_id="m-typed-1"
    )

    # A resend of the same message id is the same turn, not a second one.
    assert list(agent.send("hello there", message_id="m-typed-1")) == events
    assert agent.reply("and again") == "You said: and again"
    info = agent.info()
    assert (info.agent_id, info.status, info.model, info.turns) == (
        agent.agent_id,
        "idle",
        "fake-model",
        2,
    )
    assert [(t.user, t.reply, t.outcome) for t in agent.history()] == [
        ("hello there", "You said: hello there", "completed"),
        ("and again", "You said: and again", "completed"),
    ]
    # What the caller saw is the stored record.
    assert [e for e in agent.replay(include_history=True) if e.message_id == "m-typed-1"] == events
    assert agent.agent_id in [a.agent_id for a in engram.list_agents()]


def test_controls_edit_and_refusals(engram: Engram) -> None:
    agent = engram.create_agent(model="fake-model", goal="Help.")
    assert agent.edit(goal="Be brief.", memory={"tone": "dry"}) == "idle"
    info = agent.info()
    assert info.goal == "Be brief." and [(n.name, n.content) for n in info.notes] == [
        ("tone", "dry")
    ]
    agent.pause()
    assert agent.info().status == "paused"
    agent.resume()
    with pytest.raises(EngramError) as refused:
        engram.agent("6f1c1f9e-0000-4000-8000-000000000000").info()
    assert refused.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(EngramError) as refused:
        agent.reply("")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    agent.delete()
    with pytest.raises(EngramError) as refused:
        agent.reply("anyone?")
    assert refused.value.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


def test_a_cancelled_turn_raises_turn_failed(engram: Engram, llm: FakeLLM) -> None:
    llm.token_delay = 0.05
    llm.reply = lambda _: REPLY
    agent = engram.create_agent(model="fake-model")
    seen: list[Event] = []
    with pytest.raises(TurnFailed) as failed:
        with agent.send("talk") as turn:
            for event in turn:
                seen.append(event)
                if isinstance(event, Text):
                    agent.cancel()
                if isinstance(event, Error):
                    raise TurnFailed(event.code, event.message)
    assert failed.value.code == "CANCELLED"
    assert_one_turn(seen)


async def test_async_send_and_reply(engine: Engine) -> None:
    async with AsyncEngram(engine.address) as engram:
        agent = await engram.create_agent(model="fake-model", goal="Help.")
        events = [event async for event in agent.send("hi async")]
        assert_one_turn(events)
        assert events[-1].content == "You said: hi async"  # type: ignore[union-attr]
        assert await agent.reply("once more") == "You said: once more"
        assert [t.user for t in await agent.history()] == ["hi async", "once more"]
        replayed = [e async for e in agent.replay(include_history=True)]
        assert replayed[: len(events)] == events


def test_approvals_by_hook_and_by_hand(engram: Engram, tool_llm: FakeLLM) -> None:
    asked: list[ToolCall] = []

    def approver(call: ToolCall) -> Decision | bool:
        asked.append(call)
        if call.arguments["service"] == "db":
            return False
        return Decision.approve(decided_by="robot")

    agent = engram.create_agent(model="fake-model", tools=["deploy"], approver=approver)
    events = list(agent.send('call deploy {"service": "api"}'))
    assert_one_turn(events)
    assert [(c.name, c.arguments) for c in asked] == [("deploy", {"service": "api"})]
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("ToolCall") < kinds.index("ToolResult")
    notices = [e.status for e in events if isinstance(e, Status)]
    assert notices.index("awaiting_approval") < notices.index("approved")
    assert any("approved by robot" in e.message for e in events if isinstance(e, Status))
    assert isinstance(events[-1], Final) and events[-1].content == "Done: deployed api: done."
    assert agent.reply('call deploy {"service": "db"}') == (
        "Done: error: denied by the user: no reason given."
    )

    # Without a hook, the caller answers in place, from the stream.
    manual = engram.agent(agent.agent_id)
    answers: Iterator[Callable[[ToolCall], str]] = iter(
        [
            lambda call: manual.respond(call.call_id, "Deployed yesterday", decided_by="me"),
            lambda call: manual.approve(call.call_id, edited_input={"service": "web"}),
            lambda call: manual.deny(call.call_id, "not today"),
        ]
    )
    finals = []
    for content in ("call deploy {}", 'call deploy {"service": "x"}', "call deploy {}"):
        answer = next(answers)
        last_call: ToolCall | None = None
        for event in manual.send(content):
            if isinstance(event, ToolCall):
                last_call = event
            if isinstance(event, Status) and event.status == "awaiting_approval":
                assert last_call is not None
                answer(last_call)
            if isinstance(event, Final):
                finals.append(event.content)
    assert finals == [
        "Done: Deployed yesterday.",
        "Done: deployed web: done.",
        "Done: error: denied by the user: not today.",
    ]


def test_client_tools_run_through_hooks(engram: Engram, tool_llm: FakeLLM) -> None:
    calls: list[str] = []

    def get_location(precision: str = "city") -> str:
        """Where the user is.

        Args:
            precision: "city" or "street".
        """
        calls.append(precision)
        return "Lisbon" if precision == "city" else "Rua Augusta"

    def read_gps() -> str:
        raise RuntimeError("GPS is off")

    agent = engram.create_agent(
        model="fake-model", client_tools={"get_location": get_location, "read_gps": read_gps}
    )
    tools = {t.name: t for t in engram.list_tools()} | {}
    assert "get_location" not in tools  # declared on the agent, not a worker tool
    assert agent.reply('call get_location {"precision": "street"}') == "Done: Rua Augusta."
    assert agent.reply("call get_location {}") == "Done: Lisbon."
    assert calls == ["street", "city"]
    assert agent.reply("call read_gps {}") == "Done: error: RuntimeError: GPS is off."
    # Arguments that do not fit the signature are refused before the function runs.
    events = list(agent.send('call get_location {"precision": 3}'))
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.is_error and "precision" in result.output and calls == ["street", "city"]
    declared = {
        t.name: t
        for t in agent.engram._stub.GetAgent(
            agent_pb2.GetAgentRequest(agent_id=agent.agent_id)
        ).tools
    }
    assert declared["get_location"].kind == "client"
    assert declared["get_location"].description == "Where the user is."


async def test_async_hooks(engine: Engine, tool_llm: FakeLLM) -> None:
    async def get_location() -> str:
        return "Porto"

    async def approver(call: ToolCall) -> Decision:
        return Decision.respond(f"skipped {call.arguments['service']}")

    async with AsyncEngram(engine.address) as engram:
        agent = await engram.create_agent(
            model="fake-model",
            tools=["deploy"],
            client_tools={"get_location": get_location},
            approver=approver,
        )
        assert await agent.reply("call get_location {}") == "Done: Porto."
        assert await agent.reply('call deploy {"service": "api"}') == "Done: skipped api."


class _Recorder(agent_pb2_grpc.AgentServiceServicer):
    """A gateway stand-in that only records what metadata calls carry."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def GetAgent(self, request: agent_pb2.GetAgentRequest, context: Any) -> agent_pb2.Agent:
        self.metadata.append(dict(context.invocation_metadata()))
        return agent_pb2.Agent(agent_id=request.agent_id, status="idle")


def test_the_api_key_goes_with_every_call() -> None:
    recorder = _Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Engram(f"127.0.0.1:{port}", api_key="k-123") as engram:
            assert engram.agent("a").info().status == "idle"
        with Engram(f"127.0.0.1:{port}") as engram:
            engram.agent("b").info()
    finally:
        server.stop(None)
    assert recorder.metadata[0]["authorization"] == "Bearer k-123"
    assert "authorization" not in recorder.metadata[1]


@pytest.mark.chaos
def test_gateway_killed_mid_reply(tmp_path: Path, llm: FakeLLM) -> None:
    """The caller keeps iterating across a gateway SIGKILL and restart and sees the turn whole:
    every event once, in order, equal to the stored transcript."""
    llm.token_delay = 0.05  # about three seconds a reply
    llm.reply = lambda _: REPLY
    cluster = Cluster(tmp_path, llm.url)
    try:
        cluster.start_temporal()
        cluster.start_worker()
        port = free_port()
        gateway, address = cluster.start_gateway(port)
        reconnects: list[EngramError] = []
        engram = Engram(address, on_reconnect=lambda err, _delay: reconnects.append(err))
        agent = engram.create_agent(model="fake-model")
        events: list[Event] = []
        texts = threading.Semaphore(0)
        turn = agent.send("survive a gateway crash")

        def read() -> None:
            for event in turn:
                events.append(event)
                if isinstance(event, Text):
                    texts.release()

        reader = threading.Thread(target=read)
        reader.start()
        for _ in range(5):
            assert texts.acquire(timeout=20)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        killed_at = len(events)
        time.sleep(0.5)
        cluster.start_gateway(port)
        reader.join(60)
        assert not reader.is_alive()

        assert reconnects and killed_at < len(events)
        assert_one_turn(events)
        assert isinstance(events[-1], Final) and events[-1].content == REPLY
        shown = events[
            max(
                (i + 1 for i, e in enumerate(events) if isinstance(e, Status) and e.restarting),
                default=0,
            ) :
        ]
        assert "".join(e.content for e in shown if isinstance(e, Text)) == REPLY
        stored = [e for e in agent.replay(include_history=True) if e.message_id == turn.message_id]
        assert [replace(e, timestamp=None) for e in stored] == events
        assert [t.reply for t in agent.history()] == [REPLY]
        engram.close()
    finally:
        cluster.stop()

"""The model's request leaves while Temporal records the turn (engram/activities/early_start.py),
and no token is shown before the turn is recorded.

Each failure case the module lists is played here: a request nobody claims (the activity went to
another worker, or its workflow task was never committed), a request that is not the activity's,
an endpoint that refuses the early request, a message the workflow rejects, the engine killed
while the early request is out, and replay.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import openai
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from engram import TASK_QUEUE, WORKFLOW_ID_PREFIX
from engram.activities.early_start import EarlyStartInterceptor, EarlyStarts, Opened, key_of
from engram.codec.payload_codec import PLAIN
from engram.v1 import agent_pb2
from engram.v1.agent_pb2_grpc import AgentServiceStub as Stub
from engram.worker import workflow_runner
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import LLMRequest
from engram.workflows.wake_up import WakeUpWorkflow
from tests.conftest import chat, chat_in_background, create_agent, eventually, finals, unique
from tests.engine import Engine
from tests.fake_llm import FakeLLM
from tests.test_replay_histories import HISTORIES

# --- the registry, against a real HTTP endpoint ---------------------------------------------------


def request_for(text: str) -> LLMRequest:
    return LLMRequest(
        agent_id="a",
        message_id=f"m-{text}",
        model="fake-model",
        messages=[],
        prelude=[],
        first_text_seq=1,
    )


def body_for(text: str) -> dict[str, object]:
    return {
        "model": "fake-model",
        "messages": [{"role": "user", "content": text}],
        "stream": True,
    }


def early_starts(llm: FakeLLM, expiry: float = 30.0) -> EarlyStarts:
    client = openai.AsyncOpenAI(base_url=llm.url, api_key="unused", max_retries=0)

    async def opener(request: LLMRequest) -> Opened:
        body = body_for(request.message_id)
        opened = Opened("fake", body)
        try:
            opened.response = await client.post(
                "/chat/completions",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
        except openai.APIStatusError as err:
            opened.error = err
        return opened

    return EarlyStarts(opener, expiry)


def start_from_another_thread(early: EarlyStarts, request: LLMRequest) -> None:
    """As the workflow's thread does."""
    thread = threading.Thread(target=early.start_soon, args=(key_of("w", "r", request), request))
    thread.start()
    thread.join()


async def wait_until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_the_activity_takes_the_early_response_and_reads_it_whole(llm: FakeLLM) -> None:
    early = early_starts(llm)
    early.bind(asyncio.get_running_loop())
    text = unique("claimed")
    request = request_for(text)
    start_from_another_thread(early, request)
    await wait_until(lambda: llm.requests_for(request.message_id))

    response = await early.claim(key_of("w", "r", request), "fake", body_for(request.message_id))
    assert response is not None
    chunks = [chunk async for chunk in response]
    assert chunks and early.claimed == 1 and early.wasted == 0 and early.pending() == 0
    assert len(llm.requests_for(request.message_id)) == 1


async def test_an_unclaimed_request_is_closed_unread_when_it_expires(llm: FakeLLM) -> None:
    # The activity went to another worker, or the workflow task was never committed.
    llm.ttft, llm.token_delay = 0.0, 0.05  # a long reply, still streaming when it expires
    llm.reply = lambda _messages: "word " * 200
    disconnects = llm.disconnects
    early = early_starts(llm, expiry=0.3)
    early.bind(asyncio.get_running_loop())
    request = request_for(unique("unclaimed"))
    start_from_another_thread(early, request)

    await wait_until(lambda: early.started == 1)
    await wait_until(lambda: early.pending() == 0)
    assert early.started == 1 and early.wasted == 1 and early.claimed == 0
    # The endpoint sees the connection go: it stops generating for nobody.
    await wait_until(lambda: llm.disconnects > disconnects)
    assert await early.claim(key_of("w", "r", request), "fake", {}) is None


async def test_a_request_that_is_not_the_activitys_is_closed_and_not_taken(llm: FakeLLM) -> None:
    llm.token_delay = 0.05
    llm.reply = lambda _messages: "word " * 200
    disconnects = llm.disconnects
    early = early_starts(llm)
    early.bind(asyncio.get_running_loop())
    request = request_for(unique("changed"))
    start_from_another_thread(early, request)
    key = key_of("w", "r", request)
    await wait_until(lambda: llm.requests_for(request.message_id))

    # Another prompt (a circuit that opened, a retry going on from a partial reply...).
    assert await early.claim(key, "fake", body_for("something else")) is None
    assert early.wasted == 1 and early.claimed == 0
    await wait_until(lambda: llm.disconnects > disconnects)
    # Another endpoint, for the same body.
    start_from_another_thread(early, request)
    await wait_until(lambda: early.pending() == 1)
    assert await early.claim(key, "other", body_for(request.message_id)) is None
    assert early.wasted == 2


async def test_the_endpoints_refusal_of_the_early_request_is_the_activitys(llm: FakeLLM) -> None:
    # A failing endpoint is asked once, not once early and once again by the activity.
    llm.fail_next(503, message="overloaded")
    early = early_starts(llm)
    early.bind(asyncio.get_running_loop())
    request = request_for(unique("refused"))
    start_from_another_thread(early, request)
    await wait_until(lambda: early.pending() == 1)
    with pytest.raises(openai.APIStatusError, match="overloaded"):
        await early.claim(key_of("w", "r", request), "fake", body_for(request.message_id))
    assert len(llm.requests_for(request.message_id)) == 1


async def test_replaying_a_history_sends_nothing() -> None:
    sent: list[LLMRequest] = []

    async def opener(request: LLMRequest) -> Opened | None:
        sent.append(request)
        return None

    early = EarlyStarts(opener)
    early.bind(asyncio.get_running_loop())
    replayer = Replayer(
        workflows=[AgentWorkflow, WakeUpWorkflow],
        workflow_runner=workflow_runner(strict=True),
        data_converter=PLAIN,
        interceptors=[EarlyStartInterceptor(early, TASK_QUEUE)],
    )
    for name, text in HISTORIES.items():
        result = await replayer.replay_workflow(WorkflowHistory.from_json(name, text))
        assert result.replay_failure is None, name
    await asyncio.sleep(0.1)
    assert early.started == 0 and sent == []


# --- on a real engine -----------------------------------------------------------------------------


def history(engine: Engine, agent_id: str) -> list[HistoryEvent]:
    async def fetch() -> list[HistoryEvent]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        handle = client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
        return list((await handle.fetch_history()).events)

    return asyncio.run(fetch())


def at(event: HistoryEvent) -> float:
    return event.event_time.ToMicroseconds() / 1e6


def test_the_model_is_asked_before_the_activity_starts_and_answers_after_the_turn_is_recorded(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub)
    assert finals(chat(stub, agent_id, "warm up")) == ["You said: warm up"]
    for _ in range(3):
        text = unique("early")
        sent = time.time()
        reader = chat_in_background(stub, agent_id, text)
        reader.wait_for_texts(1)
        first_token = time.time()
        reader.done.wait(30)
        assert finals(reader.messages) == [f"You said: {text}"]
        events = history(engine, agent_id)
        accepted = [
            e
            for e in events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
            and text.encode() in e.SerializeToString()
        ]
        assert len(accepted) == 1
        later = events[events.index(accepted[0]) :]
        started = next(
            e for e in later if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        )
        # One request for the turn: the early one, taken by the activity.
        (arrived,) = llm.arrivals_for(text)
        assert sent <= arrived <= at(started) + 0.001, (sent, arrived, at(started))
        # The durability order: nothing was shown before the message was recorded.
        assert at(accepted[0]) <= first_token


def test_a_message_the_workflow_rejects_sends_nothing(stub: Stub, llm: FakeLLM) -> None:
    llm.ttft = 1.0
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(double_texting="reject"))
    busy = chat_in_background(stub, agent_id, unique("busy"))
    eventually(lambda: len(llm.requests_for("busy")) > 0, what="the first turn's request")
    refused = unique("refused")
    with pytest.raises(grpc.RpcError) as err:
        chat(stub, agent_id, refused)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    busy.done.wait(30)
    assert llm.requests_for(refused) == []


@pytest.mark.chaos
def test_the_engine_killed_while_the_early_request_is_out(tmp_path: Path, llm: FakeLLM) -> None:
    """The request reaches the model, and the engine (worker, gateway, Temporal) dies at once,
    before or after the turn's commit. Either the message was recorded and is answered once, or
    it was not and the client was told; no token is shown for a message that is not recorded."""
    engine = Engine(tmp_path / "data", llm.url).start()
    try:
        stub = engine.stub()
        agent_id = create_agent(stub)
        assert finals(chat(stub, agent_id, "before")) == ["You said: before"]
        llm.ttft = 2.0
        text = unique("killed")
        reader = chat_in_background(stub, agent_id, text)
        eventually(lambda: bool(llm.requests_for(text)), what="the early request")
        engine.kill()
        reader.done.wait(30)
        shown = [m for m in reader.messages if m.HasField("text")]

        llm.ttft = 0.0
        engine.start()
        stub = engine.stub()

        def turns() -> list[agent_pb2.Turn]:
            return list(stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns)

        recorded = [t for t in turns() if t.user == text]
        if recorded:
            eventually(
                lambda: [t.outcome for t in turns() if t.user == text] == ["completed"],
                timeout=60,
                what="the recorded message answered",
            )
            assert [t.reply for t in turns() if t.user == text] == [f"You said: {text}"]
        else:
            assert shown == []
        # The agent goes on either way.
        assert finals(chat(stub, agent_id, "after")) == ["You said: after"]
    finally:
        engine.stop()

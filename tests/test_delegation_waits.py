"""Agents waiting on other agents hold no worker slot: many waiting delegations leave a new chat
turn as quick to its first token as on an idle engine, and every one of them is answered once the
agents asked get to it. The check a waiting call makes now and then, in case no signal comes,
tells a turn that ended, one that goes on and an agent that is gone apart."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.activities.delegation import Delegation
from engram.codec.claim_check import with_claim_check
from engram.codec.payload_codec import PLAIN
from engram.transcripts import open_transcript_store
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.workflows.types import AgentAnswer, Asked
from tests.conftest import Reader, chat, chat_in_background, create_agent, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM, ToolUse

Stub = agent_pb2_grpc.AgentServiceStub

WAITING = 200
HELPERS = 4
# The measured agent's model: the fake LLM waits this long before its first token, so a turn's
# time to first token is mostly the LLM's, as in production, and scheduling jitter stays small.
MEASURED_MODEL = "bench-ttft200-delay0-tokens5"


def time_to_first_token(stub: Stub) -> float:
    agent_id = create_agent(stub, model=MEASURED_MODEL)
    started = time.monotonic()
    stream = stub.Chat(iter([user_message(agent_id, "Hello?")]), timeout=60)
    for message in stream:
        if message.HasField("text"):
            elapsed = time.monotonic() - started
            stream.cancel()
            return elapsed
    raise AssertionError("no text came")


def median_ttft(stub: Stub) -> float:
    return statistics.median(time_to_first_token(stub) for _ in range(3))


@pytest.mark.timed
def test_waiting_delegations_leave_a_new_turn_its_time_to_first_token(
    stub: Stub, llm: FakeLLM
) -> None:
    release = threading.Event()

    def reply(messages: list[dict[str, Any]]) -> str | ToolUse:
        last = messages[-1]
        if last["role"] == "tool":
            return f"Done: {last['content']}."
        content = str(last["content"])
        if content.startswith("call "):
            name, arguments = content.removeprefix("call ").split(" ", 1)
            return ToolUse([(name, arguments)])
        if content.startswith("Count "):
            # A helper's turn: it takes until the test lets it go.
            release.wait(60)
            return f"Counted {content.removeprefix('Count ')}."
        return f"You said: {content}"

    llm.reply = reply
    idle = median_ttft(stub)

    helpers = [create_agent(stub, goal="Count things.") for _ in range(HELPERS)]

    def delegate(n: int) -> Reader:
        helper = helpers[n % HELPERS]
        parent = create_agent(stub, tools=[agent_pb2.Tool(name=f"agent_{helper}")])
        task = json.dumps({"task": f"Count box {n}"})
        return chat_in_background(stub, parent, f"call agent_{helper} {task}")

    with ThreadPoolExecutor(8) as pool:
        readers = list(pool.map(delegate, range(WAITING)))

    def queued() -> int:
        return sum(
            stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=h)).queued_messages for h in helpers
        )

    # Every task has reached its helper: one turn each runs (held in its LLM call), the rest
    # wait in the helpers' queues, and every parent waits on its call.
    deadline = time.monotonic() + 40
    while queued() < WAITING - HELPERS:
        assert time.monotonic() < deadline, f"only {queued()} tasks queued"
        time.sleep(0.2)
    assert not any(r.done.is_set() for r in readers)

    loaded = median_ttft(stub)
    assert loaded < 2 * idle, f"time to first token {loaded:.3f} s, idle {idle:.3f} s"

    # Let the helpers answer: every waiting call gets its own answer, through the signal.
    release.set()
    for n, r in enumerate(readers):
        assert r.done.wait(60), f"parent {n} not answered"
        finals = [m.final_answer.content for m in r.messages if m.HasField("final_answer")]
        assert finals == [f"Done: Counted box {n}.."], (n, finals, r.error)


def test_the_slow_check_answers_for_an_agent_that_never_signals(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    """What a waiting call learns when its periodic check runs instead of a signal: the turn's
    answer once it has ended, nothing while it goes on, and an error once the agent is gone."""
    ended = create_agent(stub)
    chat(stub, ended, "Anyone there?", message_id="m-ended")
    pending = create_agent(stub)
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=pending, pause=agent_pb2.Pause()))
    Reader(stub.Chat(iter([user_message(pending, "Later.", "m-queued")]), timeout=60))
    deadline = time.monotonic() + 20
    while not stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=pending)).queued_messages:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    async def checks() -> list[AgentAnswer]:
        # As a worker connects: large payloads are read from the engine's blob store.
        converter = with_claim_check(PLAIN, store)
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}", data_converter=converter)
        delegation = Delegation(client)
        done = await delegation.check(Asked(agent_id=ended, message_id="m-ended", call_id="c1"))
        queued = Asked(agent_id=pending, message_id="m-queued", call_id="c2")
        going = await delegation.check(queued)
        await client.get_workflow_handle(WORKFLOW_ID_PREFIX + pending).terminate("gone")
        return [done, going, await delegation.check(queued)]

    store = open_transcript_store(engine.data_dir / "transcripts.db")
    try:
        done, going, gone = asyncio.run(checks())
    finally:
        store.close()
    assert (done.outcome, done.reply, done.call_id) == (
        "completed",
        "You said: Anyone there?",
        "c1",
    )
    assert going.outcome == ""
    assert (gone.outcome, gone.error) == ("failed", "it ended (terminated) first")

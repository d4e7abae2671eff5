"""Agents waiting on other agents hold no worker slot: many waiting delegations leave a new chat
turn as quick to its first token as on an idle engine, and every one of them is answered once the
agents asked get to it."""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import Reader, chat_in_background, create_agent, user_message
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

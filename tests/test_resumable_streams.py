"""Resumable streams, exactly: clients that drop their stream at random moments of long replies,
over a thousand times in all, and come back with Replay(from_sequence) hold a copy of every turn
that is byte-identical to the stored transcript, with no sequence id missing or repeated."""

from __future__ import annotations

import random
import threading
from typing import Any

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import create_agent, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM

AGENTS = 8
TURNS = 4
DISCONNECTS = 1000


def long_reply(messages: list[dict[str, Any]]) -> str:
    return f"{messages[-1]['content']}: " + "".join(f"w{i} " for i in range(300))


def converse(
    stub: agent_pb2_grpc.AgentServiceStub,
    agent_id: str,
    rng: random.Random,
    copies: dict[str, list[bytes]],
    disconnects: list[int],
) -> None:
    """Each turn: open it with Chat, then read a few messages, hang up, and Replay from the last
    sequence id held, until the final answer."""
    last = 0
    for turn in range(TURNS):
        message_id = f"{agent_id[:8]}-{turn}"
        copy = copies.setdefault(message_id, [])
        call: Any = stub.Chat(iter([user_message(agent_id, f"turn {turn}", message_id)]))
        while True:
            budget = rng.randint(1, 3)
            ended = False
            for message in call:
                if message.sequence_id <= last:
                    continue  # already held: a client drops it (it must not be sent, though)
                last = message.sequence_id
                if message.message_id == message_id:
                    copy.append(message.SerializeToString(deterministic=True))
                ended = message.message_id == message_id and message.HasField("final_answer")
                budget -= 1
                if ended or budget == 0:
                    break
            if ended:
                call.cancel()
                break
            call.cancel()
            disconnects[0] += 1
            call = stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, from_sequence=last))


def test_a_thousand_disconnects_leave_every_copy_exact(engine: Engine, llm: FakeLLM) -> None:
    llm.reply, llm.token_delay = long_reply, 0.002
    stub = engine.stub()
    agents = [create_agent(stub, goal="Talk at length.") for _ in range(AGENTS)]
    copies: dict[str, list[bytes]] = {}
    disconnects = [0]
    threads = [
        threading.Thread(
            target=converse, args=(stub, agent_id, random.Random(i), copies, disconnects)
        )
        for i, agent_id in enumerate(agents)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(t.is_alive() for t in threads)
    assert disconnects[0] >= DISCONNECTS, disconnects

    for agent_id in agents:
        stored = list(
            stub.Replay(
                agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True), timeout=60
            )
        )
        seqs = [m.sequence_id for m in stored]
        assert seqs == list(range(1, len(seqs) + 1))
        for turn in range(TURNS):
            message_id = f"{agent_id[:8]}-{turn}"
            want = [
                m.SerializeToString(deterministic=True)
                for m in stored
                if m.message_id == message_id
            ]
            assert copies[message_id] == want, message_id

"""A 50-step autonomous run while a chaos loop SIGKILLs the worker, a gateway and the Temporal
server at random moments: every step once, in order; no tool call repeated except one whose
activity was in flight (with the same call_id, its effect applied once); the run ends with its
final answer, and a client that followed it throughout, reconnecting to whichever gateway
answered, holds exactly the stored transcript."""

from __future__ import annotations

import random
import re
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from bench.soak import Parts
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import Cluster
from tests.conftest import TEST_TOOLS
from tests.effect_tools import attempts, effects
from tests.fake_llm import FakeLLM, ToolUse, text_of_content

pytestmark = pytest.mark.chaos

STEPS = 50
TIME_LIMIT = 300.0


def model(messages: list[dict[str, Any]]) -> ToolUse:
    """Works on the step after the newest one it can see done (in tool results, or in the run's
    brief of earlier steps), then finishes."""
    seen = [
        int(n)
        for m in messages
        for n in re.findall(r"step (\d+): done", text_of_content(m.get("content")))
    ]
    step = max(seen, default=0) + 1
    if step > STEPS:
        return ToolUse([("finish", f'{{"answer": "Recorded {STEPS} steps."}}')])
    return ToolUse([("slow_effect", f'{{"label": "step {step}", "seconds": 0.3}}')])


class Follower:
    """Follows the agent with Replay from the last sequence id it has, through any gateway."""

    def __init__(self, addresses: list[str], agent_id: str, run_id: str) -> None:
        self.stubs = [agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(a)) for a in addresses]
        self.agent_id, self.run_id = agent_id, run_id
        self.messages: list[agent_pb2.ServerMessage] = []
        self.reconnects = 0
        self.done = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        deadline = time.monotonic() + TIME_LIMIT
        while time.monotonic() < deadline:
            stub = self.stubs[self.reconnects % len(self.stubs)]
            after = self.messages[-1].sequence_id if self.messages else 0
            request = agent_pb2.ReplayRequest(agent_id=self.agent_id, from_sequence=after)
            try:
                for message in stub.Replay(request, timeout=60, wait_for_ready=True):
                    self.messages.append(message)
                    if message.HasField("final_answer") and message.message_id == self.run_id:
                        self.done.set()
                        return
            except grpc.RpcError:
                pass
            self.reconnects += 1
            time.sleep(0.2)


def test_a_50_step_run_through_chaos(tmp_path: Path) -> None:
    rng = random.Random(11)
    log = tmp_path / "effects.log"
    llm = FakeLLM(ttft=0.05, reply=model).start()
    cluster = Cluster(tmp_path, llm.url, ENGRAM_TOOLS=TEST_TOOLS, ENGRAM_TEST_EFFECTS=str(log))
    kills: dict[str, int] = {}
    try:
        cluster.start_temporal()
        parts = Parts(cluster)
        addresses = parts.addresses()
        stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(addresses[0]))
        created = stub.CreateAgent(
            agent_pb2.CreateAgentRequest(
                goal="Record fifty steps.",
                model="fake-model",
                tools=[agent_pb2.Tool(name="slow_effect")],
                config=agent_pb2.AgentConfig(autonomous=True, max_steps=STEPS + 10),
            ),
            timeout=30,
        )
        agent_id = created.agent_id
        run_id = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).run.run_id
        follower = Follower(addresses, agent_id, run_id)

        # Each part at least twice, in a random order, at random moments of the run.
        victims = ["worker", "gateway", "temporal"] * 2
        rng.shuffle(victims)
        for victim in victims:
            if follower.done.wait(rng.uniform(1.0, 4.0)):
                break
            kills[victim] = kills.get(victim, 0) + 1
            parts.kill_and_restart(victim, downtime=rng.uniform(0.2, 1.0))
        assert follower.done.wait(TIME_LIMIT), (kills, follower.messages[-3:])

        # The stored transcript: every step once, in order, then the answer.
        stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(addresses[0]))
        stored = list(
            stub.Replay(
                agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True),
                timeout=60,
                wait_for_ready=True,
            )
        )
        labels = [
            m.tool_call.input_json
            for m in stored
            if m.HasField("tool_call") and m.tool_call.tool_name == "slow_effect"
        ]
        assert labels == [f'{{"label": "step {n}", "seconds": 0.3}}' for n in range(1, STEPS + 1)]
        assert stored[-1].final_answer.content == f"Recorded {STEPS} steps."
        seqs = [m.sequence_id for m in stored]
        assert seqs == list(range(1, len(seqs) + 1))

        # Each step's effect once; a retried call kept its call_id (no step got a second one).
        assert effects(agent_id, log) == [f"step {n}" for n in range(1, STEPS + 1)]
        call_ids = {line.split()[1] for line in attempts(agent_id, log)}
        assert len(call_ids) == STEPS

        # The follower's copy is the stored one, each sequence id once.
        followed = [m.sequence_id for m in follower.messages]
        assert followed == seqs, (len(followed), len(seqs))
        by_seq = {m.sequence_id: m for m in stored}
        for message in follower.messages:
            assert message.WhichOneof("payload") == by_seq[message.sequence_id].WhichOneof(
                "payload"
            )
        assert sum(kills.values()) >= 3, kills
    finally:
        cluster.stop()
        llm.stop()

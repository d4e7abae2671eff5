"""Chaos soak: `python -m bench.soak --agents 100 --turns 20 --kill-every 3`.

N agents chat M turns each through two gateways while a chaos loop SIGKILLs a random part
(worker, gateway or Temporal server) and restarts it. Clients do what a real client does after a
broken call: resend the same message id, through whichever gateway answers. At the end every
agent's transcript must hold every turn exactly once, in order, with its complete reply.
Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import Cluster
from tests.engine import free_port
from tests.fake_llm import FakeLLM


@dataclass
class SoakResult:
    agents: int
    turns: int
    kills: dict[str, int] = field(default_factory=dict)
    resends: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


class Parts:
    """The cluster's processes, restartable in place (gateways keep their ports)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.lock = threading.Lock()
        self.worker = cluster.start_worker()
        self.ports = [free_port(), free_port()]
        self.gateways = [cluster.start_gateway(p)[0] for p in self.ports]

    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def kill_and_restart(self, victim: str, downtime: float) -> None:
        with self.lock:
            if victim == "worker":
                _kill(self.worker)
                time.sleep(downtime)
                self.worker = self.cluster.start_worker()
            elif victim == "gateway":
                i = random.randrange(len(self.gateways))
                _kill(self.gateways[i])
                time.sleep(downtime)
                self.gateways[i] = self.cluster.start_gateway(self.ports[i])[0]
            else:
                self.cluster.kill_temporal()
                time.sleep(downtime)
                self.cluster.start_temporal()


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def expected_reply(content: str) -> str:
    return f"You said: {content}"


def converse(
    addresses: list[str], agent_id: str, turns: int, result: SoakResult, deadline: float
) -> None:
    stubs = [agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(a)) for a in addresses]
    for turn in range(turns):
        content = f"agent {agent_id} turn {turn}"
        message = agent_pb2.ClientMessage(
            agent_id=agent_id,
            message_id=f"{agent_id[:8]}-{turn}",
            user_input=agent_pb2.UserInput(content=content),
        )
        attempt = 0
        while True:
            stub = stubs[(turn + attempt) % len(stubs)]
            try:
                replies = list(stub.Chat(iter([message]), timeout=30, wait_for_ready=True))
                if replies and replies[-1].HasField("final_answer"):
                    break
                if replies and replies[-1].HasField("error"):
                    result.problems.append(f"{content}: error {replies[-1].error.message}")
                    break
            except grpc.RpcError:
                pass
            attempt += 1
            result.resends += 1
            if time.monotonic() > deadline:
                result.problems.append(f"{content}: gave up")
                return
            time.sleep(0.2)


def check_transcripts(address: str, agents: list[str], turns: int, result: SoakResult) -> None:
    stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(address))
    for agent_id in agents:
        request = agent_pb2.GetHistoryRequest(agent_id=agent_id)
        history = stub.GetHistory(request, timeout=30, wait_for_ready=True)
        got = [(t.message_id, t.outcome, t.reply) for t in history.turns]
        want = [
            (f"{agent_id[:8]}-{n}", "completed", expected_reply(f"agent {agent_id} turn {n}"))
            for n in range(turns)
        ]
        if got != want:
            result.problems.append(f"agent {agent_id}: transcript {got} != {want}")


def soak(
    data_dir: Path,
    agents: int,
    turns: int,
    kill_every: float,
    time_limit: float,
    seed: int = 1,
    token_delay: float = 0.02,
) -> SoakResult:
    random.seed(seed)
    llm = FakeLLM(token_delay=token_delay).start()
    cluster = Cluster(data_dir, llm.url)
    result = SoakResult(agents, turns)
    start = time.monotonic()
    try:
        cluster.start_temporal()
        parts = Parts(cluster)
        stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(parts.addresses()[0]))
        ids = [
            stub.CreateAgent(
                agent_pb2.CreateAgentRequest(goal="soak", model="m"),
                timeout=30,
                wait_for_ready=True,
            ).agent_id
            for _ in range(agents)
        ]
        deadline = start + time_limit
        clients = [
            threading.Thread(target=converse, args=(parts.addresses(), a, turns, result, deadline))
            for a in ids
        ]
        for client in clients:
            client.start()
        while any(c.is_alive() for c in clients) and time.monotonic() < deadline:
            time.sleep(kill_every * random.uniform(0.5, 1.5))
            if any(c.is_alive() for c in clients):
                victim = random.choice(["worker", "gateway", "gateway", "temporal"])
                result.kills[victim] = result.kills.get(victim, 0) + 1
                parts.kill_and_restart(victim, downtime=random.uniform(0.2, 1.5))
        for client in clients:
            client.join(max(0.0, deadline - time.monotonic()) + 30)
        check_transcripts(parts.addresses()[0], ids, turns, result)
    finally:
        cluster.stop()
        llm.stop()
    result.seconds = round(time.monotonic() - start, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between kills")
    parser.add_argument("--time-limit", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, help="also write the result here (JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        result = soak(
            Path(data), args.agents, args.turns, args.kill_every, args.time_limit, args.seed
        )
    report = json.dumps(result.__dict__, indent=2)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    raise SystemExit(1 if result.problems else 0)


if __name__ == "__main__":
    main()

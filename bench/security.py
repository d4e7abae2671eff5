"""What safety costs: `python -m bench.security [--samples 60]`.

Starts two engines side by side against one in-process fake LLM (20 tokens, no delay): one open and
in plain text, one with API keys required and every payload and transcript encrypted. Measures,
interleaved in the same run:
  1. CreateAgent and time to first token (p50, p99) on each, and the difference;
  2. on the secured engine, another tenant's p99 time to first token while a noisy tenant (its
     own process) floods the gateway past its rate limit, against the same measured in quiet.
Prints the figures and writes bench/results/security-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from temporalio.client import Client as TemporalClient

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.engine import Engine
from tests.fake_llm import FakeLLM

RESULTS = Path(__file__).resolve().parent / "results"
# Quiet and flooded blocks of `--samples` each.
BLOCKS = 4
KEYS = "bench:" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000, 2)


def new_key(data_dir: Path, tenant: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "engram.cli",
            "keys",
            "create",
            "--tenant",
            tenant,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


class Client:
    def __init__(self, engine: Engine, key: str = "") -> None:
        self.stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(engine.address))
        self.metadata = [("authorization", f"Bearer {key}")] if key else []

    def create(self) -> tuple[str, float]:
        start = time.perf_counter()
        response = self.stub.CreateAgent(
            agent_pb2.CreateAgentRequest(goal="benchmark", model="bench-ttft0-delay0-tokens20"),
            metadata=self.metadata,
        )
        return str(response.agent_id), time.perf_counter() - start

    def ttft(self, agent_id: str) -> float:
        message = agent_pb2.ClientMessage(
            agent_id=agent_id, user_input=agent_pb2.UserInput(content="hello")
        )
        start = time.perf_counter()
        first = 0.0
        for reply in self.stub.Chat(iter([message]), metadata=self.metadata, timeout=60):
            if reply.HasField("text") and not first:
                first = time.perf_counter() - start
        return first


def flood_until_killed(address: str, key: str) -> None:
    stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(address))
    metadata = [("authorization", f"Bearer {key}")]
    while True:
        try:
            stub.ListAgents(agent_pb2.ListAgentsRequest(), metadata=metadata)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise


def history_bytes_per_turn(engine: Engine, agent_id: str) -> int:
    """What a turn adds to the agent's history, as Temporal stores it (what its suggestion to
    continue-as-new counts)."""

    async def measure() -> int:
        client = await TemporalClient.connect(f"127.0.0.1:{engine.temporal_port}")
        history = await client.get_workflow_handle(f"agent-{agent_id}").fetch_history()
        turns = sum(
            1
            for e in history.events
            if e.HasField("workflow_execution_update_accepted_event_attributes")
        )
        return sum(e.ByteSize() for e in history.events) // max(1, turns)

    return asyncio.run(measure())


def main(samples: int) -> None:
    llm = FakeLLM().start()
    with tempfile.TemporaryDirectory() as plain_dir, tempfile.TemporaryDirectory() as safe_dir:
        secured = Path(safe_dir)
        noisy_key = new_key(secured, "noisy")
        quiet_key = new_key(secured, "quiet")
        plain = Engine(Path(plain_dir), llm.url).start()
        safe = Engine(
            secured,
            llm.url,
            ENGRAM_ENCRYPTION_KEYS=KEYS,
            ENGRAM_RATE_LIMIT="20",
            ENGRAM_RATE_BURST="20",
        ).start()
        try:
            open_client, safe_client = Client(plain), Client(safe, quiet_key)
            creates: dict[str, list[float]] = {"open": [], "secured": []}
            ttfts: dict[str, list[float]] = {"open": [], "secured": []}
            agents = {"open": open_client.create()[0], "secured": safe_client.create()[0]}
            for _ in range(5):  # warm up
                open_client.ttft(agents["open"])
                safe_client.ttft(agents["secured"])
            for _ in range(samples):
                for name, client in (("open", open_client), ("secured", safe_client)):
                    creates[name].append(client.create()[1])
                    ttfts[name].append(client.ttft(agents[name]))
            history = {
                "open": history_bytes_per_turn(plain, agents["open"]),
                "secured": history_bytes_per_turn(safe, agents["secured"]),
            }
            plain.stop()  # the noisy part is the secured engine's alone
            # The noisy tenant, from its own process (as it would be), calling as fast as its
            # limit lets it; quiet and flooded blocks alternate, so drift hits both alike.
            quiet: list[float] = []
            flooded: list[float] = []
            context = multiprocessing.get_context("spawn")
            for _ in range(BLOCKS):
                quiet += [safe_client.ttft(agents["secured"]) for _ in range(samples)]
                flood = context.Process(
                    target=flood_until_killed, args=(safe.address, noisy_key), daemon=True
                )
                flood.start()
                time.sleep(2)
                flooded += [safe_client.ttft(agents["secured"]) for _ in range(samples)]
                flood.kill()
                flood.join(5)
        finally:
            if plain.process is not None and plain.process.poll() is None:
                plain.stop()
            safe.stop()
    llm.stop()
    result = {
        "date": datetime.date.today().isoformat(),
        "samples": samples,
        "create_agent_ms": {k: {"p50": pct(v, 50), "p99": pct(v, 99)} for k, v in creates.items()},
        "ttft_ms": {k: {"p50": pct(v, 50), "p99": pct(v, 99)} for k, v in ttfts.items()},
        "cost_p50_ms": {
            "create_agent": round(pct(creates["secured"], 50) - pct(creates["open"], 50), 2),
            "ttft": round(pct(ttfts["secured"], 50) - pct(ttfts["open"], 50), 2),
        },
        # Encryption compresses first: the history a turn adds, and so how often an agent
        # continues-as-new (Temporal suggests it by history size).
        "history_bytes_per_turn": history,
        "noisy_tenant": {
            "quiet_p99_ms": pct(quiet, 99),
            "flooded_p99_ms": pct(flooded, 99),
            "p99_ratio": round(pct(flooded, 99) / pct(quiet, 99), 2),
        },
    }
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"security-{result['date']}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=60)
    main(parser.parse_args().samples)

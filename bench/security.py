"""What safety costs: `python -m bench.security [--samples 60]`.

Starts two engines side by side against one in-process fake LLM (20 tokens, no delay): one open and
in plain text, one with API keys required and every payload and transcript encrypted. Measures,
interleaved in the same run:
  1. CreateAgent and time to first token (p50, p99) on each, and the difference;
  2. on the secured engine, another tenant's p99 time to first token while a noisy tenant (its
     own process) floods the gateway past its rate limit, against the same measured in quiet;
  3. on the secured engine, another tenant's p50 and p99 time to first token while a tenant pushes
     messages down 8 and 16 Chat streams, and 10,000 down one stream, as ratios to the same
     measured alone in blocks between the floods (each flood's agents are deleted after it).
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
import threading
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
# Tenant a's floods: name, Chat streams, messages down each.
# (name, streams, messages per stream, whether a refused stream is opened again at once).
FLOODS = (
    ("8_streams", 8, 10_000, False),
    ("16_streams", 16, 10_000, False),
    ("1_stream_10000_messages", 1, 10_000, False),
    ("8_streams_persistent", 8, 10_000, True),
    ("16_streams_persistent", 16, 10_000, True),
)
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


def push_messages(
    address: str, key: str, streams: int, messages: int, persistent: bool = False
) -> None:
    """Tenant a's flood: `streams` agents, each sent `messages` inputs down one Chat stream as
    fast as the gateway takes them, replies read and dropped; `persistent`, again and again until
    killed, whatever it is refused."""
    stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(address))
    metadata = [("authorization", f"Bearer {key}")]

    def push(agent_id: str) -> None:
        # Refused past a limit (RESOURCE_EXHAUSTED), the flood opens the stream again at once:
        # it stays at its limits for as long as it runs, as an attacker would.
        while True:
            inputs = (
                agent_pb2.ClientMessage(
                    agent_id=agent_id, user_input=agent_pb2.UserInput(content="x")
                )
                for _ in range(messages)
            )
            try:
                for _ in stub.Chat(inputs, metadata=metadata):
                    pass
            except grpc.RpcError:
                if not persistent:
                    return
                # A moment's pause, so that the flood's own process (on this same machine) does
                # not spin on refusals: a bench of the engine, not of the attacker's CPU.
                time.sleep(0.02)

    agents = [
        stub.CreateAgent(
            agent_pb2.CreateAgentRequest(goal="flood", model="bench-ttft0-delay0-tokens20"),
            metadata=metadata,
        ).agent_id
        for _ in range(streams)
    ]
    threads = [threading.Thread(target=push, args=(a,), daemon=True) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def delete_agents(address: str, key: str) -> None:
    """Delete the tenant's agents, so the turns its flood queued stop running."""
    stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(address))
    metadata = [("authorization", f"Bearer {key}")]
    for agent in stub.ListAgents(agent_pb2.ListAgentsRequest(), metadata=metadata).agents:
        stub.DeleteAgent(
            agent_pb2.DeleteAgentRequest(agent_id=agent.agent_id, force=True), metadata=metadata
        )


def flood_shapes(
    address: str, client: Client, agent_id: str, key: str, samples: int
) -> dict[str, dict[str, float]]:
    """Tenant b's TTFT alone, then under each of tenant a's floods (its own process), alone
    again after each: the ratios are to every alone block of the run."""
    context = multiprocessing.get_context("spawn")
    alone: list[float] = []
    flooded: dict[str, list[float]] = {}
    for name, streams, messages, persistent in FLOODS:
        alone += [client.ttft(agent_id) for _ in range(samples)]
        flood = context.Process(
            target=push_messages,
            args=(address, key, streams, messages, persistent),
            daemon=True,
        )
        flood.start()
        time.sleep(3)  # the flood's agents created and their queues filling
        flooded[name] = [client.ttft(agent_id) for _ in range(samples)]
        flood.kill()
        flood.join(5)
        delete_agents(address, key)
        time.sleep(2)
    alone += [client.ttft(agent_id) for _ in range(samples)]
    result: dict[str, dict[str, float]] = {
        "alone": {"p50_ms": pct(alone, 50), "p99_ms": pct(alone, 99)}
    }
    for name, values in flooded.items():
        result[name] = {
            "p50_ms": pct(values, 50),
            "p99_ms": pct(values, 99),
            "p50_ratio": round(pct(values, 50) / pct(alone, 50), 2),
            "p99_ratio": round(pct(values, 99) / pct(alone, 99), 2),
        }
    return result


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


def floods_only(samples: int) -> None:
    """Part 3 alone, on the secured engine: `--floods-only`."""
    llm = FakeLLM().start()
    with tempfile.TemporaryDirectory() as safe_dir:
        secured = Path(safe_dir)
        flood_key = new_key(secured, "a")
        b_key = new_key(secured, "b")
        safe = Engine(secured, llm.url, ENGRAM_ENCRYPTION_KEYS=KEYS).start()
        try:
            client = Client(safe, b_key)
            agent_id = client.create()[0]
            for _ in range(5):  # warm up
                client.ttft(agent_id)
            floods = flood_shapes(safe.address, client, agent_id, flood_key, samples)
        finally:
            safe.stop()
    llm.stop()
    result = {"date": datetime.date.today().isoformat(), "samples": samples, "floods": floods}
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"security-floods-{result['date']}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {target}")


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
            floods = flood_shapes(safe.address, safe_client, agents["secured"], noisy_key, samples)
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
        # Another tenant's TTFT while one pushes messages down many Chat streams.
        "floods": floods,
    }
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"security-{result['date']}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--floods-only", action="store_true", help="only part 3")
    args = parser.parse_args()
    if args.floods_only:
        floods_only(args.samples)
    else:
        main(args.samples)

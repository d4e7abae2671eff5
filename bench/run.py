"""Engram's latency and scale benchmark: `python -m bench.run [--quick]`.

Starts its own embedded engine (as `engram dev`) and a fake OpenAI-compatible LLM in a separate
process, then measures, against a baseline taken in the same run:
  1. CreateAgent latency;
  2. time to first token through Engram vs straight to the LLM (interleaved), and their ratio at
     300 ms LLM TTFT;
  3. time to the last token, and tokens/s delivered vs produced (2,000 tokens, no delay);
  4. chat turns/s with 1, 10 and 100 agents at once against a zero-delay LLM, and CPU per turn;
  5. memory of the engine and Temporal with 1,000 and 10,000 idle agents, and the extra latency of
     an agent evicted from the worker's cache.
Prints a table and writes bench/results/<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import grpc
import openai
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.codec.claim_check import payload_bytes
from engram.processes import die_with_parent
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.engine import Engine, children, free_port

RESULTS = Path(__file__).resolve().parent / "results"
Stub = agent_pb2_grpc.AgentServiceStub
T = TypeVar("T")


def start_fake_llm(port: int) -> subprocess.Popen[bytes]:
    """The fake OpenAI-compatible LLM (tests/fake_llm.py) in its own process."""
    fake = Path(__file__).resolve().parent.parent / "tests" / "fake_llm.py"
    return subprocess.Popen(
        die_with_parent([sys.executable, str(fake), "--port", str(port)]),
        stdout=subprocess.DEVNULL,
    )


def with_engine(measure: Callable[[Engine, str], Coroutine[Any, Any, T]]) -> T:
    """`measure(engine, llm_url)` against a fresh engine (as `engram dev`) and the fake LLM."""
    llm_port = free_port()
    llm = start_fake_llm(llm_port)
    llm_url = f"http://127.0.0.1:{llm_port}/v1"
    with tempfile.TemporaryDirectory() as data:
        engine = Engine(Path(data), llm_url).start()
        try:
            return asyncio.run(measure(engine, llm_url))
        finally:
            engine.stop()
            llm.terminate()


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


async def stream_direct(
    llm: openai.AsyncOpenAI, model_name: str, messages: list[dict[str, str]]
) -> AsyncIterator[str]:
    """The reply's text pieces, asked for the cheapest way the openai client allows, as Engram's
    activity asks: the body posted as built and each chunk read as the JSON it is.
    `chat.completions.create` would first walk every message (about 0.1 ms each), a cost that
    grows with the conversation and would flatter any system measured against it."""
    stream = await llm.post(
        "/chat/completions",
        body={"model": model_name, "messages": messages, "stream": True},
        options={"security": {"bearer_auth": True}},
        cast_to=object,
        stream=True,
        stream_cls=openai.AsyncStream[object],
    )
    async for chunk in stream:
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if choices and (content := choices[0].get("delta", {}).get("content")):
            yield content


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p90/p99 (milliseconds by default)."""
    return {f"p{q}": round(pct(values, q) * scale, 2) for q in (50, 90, 99)} | {"n": len(values)}


def model(ttft_ms: int = 0, delay_ms: int = 0, tokens: int = 20) -> str:
    return f"bench-ttft{ttft_ms}-delay{delay_ms}-tokens{tokens}"


class ClockedTurn:
    """Client clocks of one turn through the gateway, in seconds after sending: the durability
    ack, the first and last text, the final answer; and the text messages and fake-LLM tokens
    ("tok") it carried."""

    def __init__(self) -> None:
        self.sent = time.time()
        self.ack = 0.0
        self.first = 0.0
        self.last_text = 0.0
        self.last = 0.0
        self.texts = 0
        self.tokens = 0


class Bench:
    def __init__(self, engine: Engine, llm_url: str) -> None:
        self.engine = engine
        self.channel = grpc.aio.insecure_channel(engine.address)
        self.stub = Stub(self.channel)
        self.llm = openai.AsyncOpenAI(base_url=llm_url, api_key="unused", max_retries=0)

    async def create(self, model_name: str) -> str:
        response = await self.stub.CreateAgent(
            agent_pb2.CreateAgentRequest(goal="benchmark", model=model_name)
        )
        return str(response.agent_id)

    async def engram_turn(self, agent_id: str, text: str = "hi") -> tuple[float, float, int]:
        """(time to first text, time to final answer, text messages) through the gateway."""
        turn = await self.clocked_turn(agent_id, text)
        return turn.first, turn.last, turn.texts

    async def clocked_turn(self, agent_id: str, text: str = "hi") -> ClockedTurn:
        """One turn through the gateway, with the client's clock on each of its steps."""
        message = agent_pb2.ClientMessage(
            agent_id=agent_id, user_input=agent_pb2.UserInput(content=text)
        )
        turn = ClockedTurn()
        start = time.perf_counter()
        async for reply in self.stub.Chat(iter([message])):
            kind = reply.WhichOneof("payload")
            if kind == "user_message" and not turn.ack:
                turn.ack = time.perf_counter() - start
            elif kind == "text":
                turn.texts += 1
                turn.tokens += reply.text.content.count("tok")
                turn.last_text = time.perf_counter() - start
                if not turn.first:
                    turn.first = turn.last_text
            elif kind == "error":
                raise RuntimeError(reply.error.message)
        turn.last = time.perf_counter() - start
        return turn

    async def direct_turn(
        self, model_name: str, history: list[dict[str, str]], text: str = "hi"
    ) -> tuple[float, float, int]:
        """The same request, straight to the LLM with the openai client: the conversation so far
        (`history`, as Engram would send it) and the new message."""
        start = time.perf_counter()
        first = 0.0
        chunks = 0
        reply = []
        async for token in stream_direct(
            self.llm, model_name, [*history, {"role": "user", "content": text}]
        ):
            chunks += 1
            reply.append(token)
            if not first:
                first = time.perf_counter() - start
        elapsed = time.perf_counter() - start
        history += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": "".join(reply)},
        ]
        return first, elapsed, chunks

    async def paired(self, model_name: str, rounds: int) -> dict[str, Any]:
        """Interleaved Engram and direct turns; one agent, so the conversation grows as in use."""
        agent_id = await self.create(model_name)
        history = [{"role": "system", "content": "Your goal: benchmark"}]
        await self.engram_turn(agent_id)  # warm the agent and the channels
        await self.direct_turn(model_name, history)
        engram: list[tuple[float, float, int]] = []
        direct: list[tuple[float, float, int]] = []
        for i in range(rounds):
            # Alternate which goes first, so neither always meets a warmer machine.
            if i % 2:
                e = await self.engram_turn(agent_id)
                d = await self.direct_turn(model_name, history)
            else:
                d = await self.direct_turn(model_name, history)
                e = await self.engram_turn(agent_id)
            engram.append(e)
            direct.append(d)
        ttft_over = [e[0] - d[0] for e, d in zip(engram, direct, strict=True)]
        last_over = [e[1] - d[1] for e, d in zip(engram, direct, strict=True)]
        return {
            "engram_ttft_ms": summary([e[0] for e in engram]),
            "direct_ttft_ms": summary([d[0] for d in direct]),
            "ttft_overhead_ms": summary(ttft_over),
            "ttft_ratio_p50": round(
                statistics.median(e[0] for e in engram) / statistics.median(d[0] for d in direct), 4
            ),
            "last_token_overhead_ms": summary(last_over),
            "engram_tokens_per_s": round(statistics.median(e[2] / e[1] for e in engram), 1),
            "direct_tokens_per_s": round(statistics.median(d[2] / d[1] for d in direct), 1),
        }

    async def breakdown(self, model_name: str, rounds: int) -> dict[str, float]:
        """Where a turn's time goes: client timestamps against the agent's history events.

        Medians in ms. Same clock: client, engine and server share the machine."""
        agent_id = await self.create(model_name)
        await self.engram_turn(agent_id)
        marks = []
        for _ in range(rounds):
            sent = time.time()
            first, total, _ = await self.engram_turn(agent_id)
            marks.append((sent, sent + first, sent + total))
        client = await Client.connect(f"127.0.0.1:{self.engine.temporal_port}")
        history = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).fetch_history()
        turns: list[dict[str, float]] = []
        current: dict[str, float] = {}
        for event in history.events:
            kind = event.WhichOneof("attributes") or ""
            at = event.event_time.ToDatetime(datetime.UTC).timestamp()
            if kind.startswith("workflow_execution_update_accepted") and "accepted" not in current:
                current["accepted"] = at
            elif kind.startswith("activity_task_scheduled"):
                current["activity_scheduled"] = at
            elif kind.startswith("activity_task_completed"):
                current["activity_completed"] = at
            elif kind.startswith("workflow_execution_update_completed") and len(current) == 3:
                current["update_completed"] = at
                turns.append(current)
                current = {}
        turns = turns[1:]  # the warm-up turn

        def median_ms(values: list[float]) -> float:
            return round(statistics.median(values) * 1000, 2)

        pairs = list(zip(marks, turns, strict=True))
        return {
            "client_send_to_update_accepted": median_ms([t["accepted"] - m[0] for m, t in pairs]),
            "accepted_to_activity_scheduled": median_ms(
                [t["activity_scheduled"] - t["accepted"] for m, t in pairs]
            ),
            "activity_scheduled_to_first_text_at_client": median_ms(
                [m[1] - t["activity_scheduled"] for m, t in pairs]
            ),
            "activity_completed_to_update_completed": median_ms(
                [t["update_completed"] - t["activity_completed"] for m, t in pairs]
            ),
            "update_completed_to_client_end": median_ms(
                [m[2] - t["update_completed"] for m, t in pairs]
            ),
            "client_ttft": median_ms([m[1] - m[0] for m, t in pairs]),
            "client_turn": median_ms([m[2] - m[0] for m, t in pairs]),
        }

    async def long_conversation(self, turns: int) -> dict[str, Any]:
        """Turn latency early and late in one agent's life, and the state it carries."""
        agent_id = await self.create(model(tokens=20))
        latencies = [
            (await self.engram_turn(agent_id, f"turn {i} " + "x " * 40))[1] for i in range(turns)
        ]
        client = await Client.connect(f"127.0.0.1:{self.engine.temporal_port}")
        runs = 0
        state_bytes = 0
        query = f"WorkflowId = '{WORKFLOW_ID_PREFIX}{agent_id}'"
        async for execution in client.list_workflows(query):
            runs += 1
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            async for event in handle.fetch_history_events():
                payloads = event.workflow_execution_started_event_attributes.input.payloads
                state_bytes = max(state_bytes, sum(payload_bytes(p) for p in payloads))
                break
        return {
            "turns": turns,
            "turn_ms_at_turns_10_to_30": summary(latencies[10:30]),
            "turn_ms_last_20": summary(latencies[-20:]),
            "runs": runs,
            "largest_run_input_bytes": state_bytes,
        }

    async def throughput(self, agents: int, turns: int) -> dict[str, Any]:
        ids = await asyncio.gather(*(self.create(model(tokens=20)) for _ in range(agents)))
        await asyncio.gather(*(self.engram_turn(a) for a in ids))  # warm
        cpu_before = cpu_split(self.engine)
        start = time.perf_counter()

        async def converse(agent_id: str) -> None:
            for _ in range(turns):
                await self.engram_turn(agent_id)

        await asyncio.gather(*(converse(a) for a in ids))
        elapsed = time.perf_counter() - start
        cpu_after = cpu_split(self.engine)
        total = agents * turns
        per_turn = {k: round((cpu_after[k] - cpu_before[k]) / total * 1000, 2) for k in cpu_after}
        return {
            "agents": agents,
            "turns": total,
            "turns_per_s": round(total / elapsed, 1),
            "cpu_ms_per_turn": round(sum(per_turn.values()), 2),
            "cpu_ms_per_turn_by_process": per_turn,
        }

    async def scale(self, counts: list[int], probes: int) -> dict[str, Any]:
        results: dict[str, Any] = {}
        created: list[str] = []
        semaphore = asyncio.Semaphore(32)

        async def one() -> str:
            async with semaphore:
                return await self.create(model(tokens=5))

        for count in counts:
            created += await asyncio.gather(*(one() for _ in range(count - len(created))))
            await asyncio.sleep(2)
            results[f"idle_{count}"] = memory(self.engine)
        # The oldest agents have been evicted from the worker's cache (1,000 workflows by
        # default); the newest are still in it.
        dormant = [await self.engram_turn(a) for a in created[:probes]]
        hot_agent = created[-1]
        await self.engram_turn(hot_agent)
        hot = [await self.engram_turn(hot_agent) for _ in range(probes)]
        results["dormant_turn_ms"] = summary([d[1] for d in dormant])
        results["hot_turn_ms"] = summary([h[1] for h in hot])
        results["dormant_extra_ms_p50"] = round(
            (statistics.median(d[1] for d in dormant) - statistics.median(h[1] for h in hot))
            * 1000,
            2,
        )
        return results


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu_split(engine: Engine) -> dict[str, float]:
    assert engine.process is not None
    [temporal] = [pid for pid, _ in children(engine.process.pid)]
    return {"engine": cpu_seconds(engine.process.pid), "temporal": cpu_seconds(temporal)}


def memory(engine: Engine) -> dict[str, float]:
    assert engine.process is not None
    [temporal] = [pid for pid, _ in children(engine.process.pid)]
    return {
        "engine_rss_mb": rss_mb(engine.process.pid),
        "temporal_rss_mb": rss_mb(temporal),
    }


async def timed(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def run(engine: Engine, llm_url: str, quick: bool) -> dict[str, Any]:
    bench = Bench(engine, llm_url)
    rounds = 30 if quick else 200
    results: dict[str, Any] = {}
    await bench.create(model())  # warm up
    results["create_agent_ms"] = summary(await timed(lambda: bench.create(model()), rounds))
    print("create", results["create_agent_ms"], flush=True)
    results["ttft_llm_0ms"] = await bench.paired(model(tokens=20), rounds)
    print("ttft 0", results["ttft_llm_0ms"], flush=True)
    results["turn_breakdown_ms"] = await bench.breakdown(model(tokens=20), 30)
    print("breakdown", results["turn_breakdown_ms"], flush=True)
    results["ttft_llm_300ms"] = await bench.paired(model(ttft_ms=300, tokens=20), rounds // 4)
    print("ttft 300", results["ttft_llm_300ms"], flush=True)
    results["long_reply_2000_tokens"] = await bench.paired(model(tokens=2000), rounds // 10 or 3)
    print("2000 tokens", results["long_reply_2000_tokens"], flush=True)
    results["long_conversation"] = await bench.long_conversation(300 if quick else 2000)
    print("long conversation", results["long_conversation"], flush=True)
    results["throughput"] = [
        await bench.throughput(n, turns)
        for n, turns in ((1, 50), (10, 10), (100, 3) if quick else (100, 5))
    ]
    print("throughput", results["throughput"], flush=True)
    counts = [200, 1200] if quick else [1000, 10000]
    results["scale"] = await bench.scale(counts, probes=10 if quick else 30)
    print("scale", results["scale"], flush=True)
    await bench.channel.close(None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 1,200 agents at most")
    parser.add_argument(
        "--output", type=Path, help="results file (default: bench/results/DATE.json)"
    )
    args = parser.parse_args()

    results = with_engine(lambda engine, llm_url: run(engine, llm_url, args.quick))
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "conditions": "engram dev (embedded Temporal, SQLite) on loopback; fake LLM in its own "
        "process; client, engine, Temporal and LLM share the machine",
        "quick": args.quick,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    output = (
        args.output or RESULTS / f"{datetime.date.today()}{'-quick' if args.quick else ''}.json"
    )
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()

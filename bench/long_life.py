"""One agent for many turns: `python -m bench.long_life [--turns 10000]`.

Measures whether an agent stays as fast at turn 10,000 as at turn 10, against a baseline taken in
the same run: at each checkpoint, Engram turns are interleaved with direct requests to the same
fake LLM carrying a prompt of the same size (the conversation the client has seen, cut to the same
context budget). Also reports the workflow state each run starts from, and each run's history.
Writes bench/results/long-life-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.run import RESULTS, Bench, model, summary, with_engine
from engram import WORKFLOW_ID_PREFIX
from engram.codec.claim_check import payload_bytes
from engram.vocabulary import TurnOutcome
from engram.workflows.prompt import build_prompt
from engram.workflows.types import AgentSpec, Turn
from tests.engine import Engine

SAMPLES = 40


def checkpoints(turns: int) -> list[int]:
    return sorted({c for c in (10, 100, 1000, 2000, 5000, turns - SAMPLES) if c <= turns - SAMPLES})


class LongLife:
    def __init__(self, bench: Bench, model_name: str) -> None:
        self.bench = bench
        self.model = model_name
        self.spec = AgentSpec(agent_id="", goal="benchmark", model=model_name)
        self.turns: list[Turn] = []
        self.latencies: list[float] = []

    async def turn(self, agent_id: str, text: str) -> float:
        start = time.perf_counter()
        await self.bench.engram_turn(agent_id, text)
        elapsed = time.perf_counter() - start
        self.latencies.append(elapsed)
        # The client's view of the conversation, for the baseline's prompt.
        self.turns.append(
            Turn(str(len(self.turns)), text, outcome=TurnOutcome.COMPLETED, reply="tok " * 20)
        )
        return elapsed

    async def direct(self, text: str) -> float:
        prompt = build_prompt(self.spec, self.turns, text)
        history = [{"role": m.role, "content": m.content} for m in prompt[:-1]]
        _, elapsed, _ = await self.bench.direct_turn(self.model, history, text)
        return elapsed

    async def run(self, turns: int) -> dict[str, Any]:
        agent_id = await self.bench.create(self.model)
        marks = checkpoints(turns)
        report: dict[str, Any] = {}
        i = 0
        started = time.perf_counter()
        while i < turns:
            text = f"turn {i} " + "x " * 40
            if marks and i == marks[0]:
                marks.pop(0)
                engram, direct = [], []
                for j in range(SAMPLES):
                    text = f"turn {i + j} " + "x " * 40
                    # The baseline first on even samples, Engram first on odd ones.
                    if j % 2:
                        e = await self.turn(agent_id, text)
                        d = await self.direct(text)
                    else:
                        d = await self.direct(text)
                        e = await self.turn(agent_id, text)
                    engram.append(e)
                    direct.append(d)
                report[f"turn_{i}"] = {
                    "engram_turn_ms": summary(engram),
                    "direct_turn_ms": summary(direct),
                    "overhead_ms": summary([e - d for e, d in zip(engram, direct, strict=True)]),
                    "ratio_p50": round(statistics.median(engram) / statistics.median(direct), 3),
                }
                print(i, json.dumps(report[f"turn_{i}"]), flush=True)
                i += SAMPLES
                continue
            await self.turn(agent_id, text)
            i += 1
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
        # Every turn, not just the checkpoints: a trend over the agent's life shows here.
        report["turn_ms_p50_by_1000_turns"] = [
            round(statistics.median(self.latencies[i : i + 1000]) * 1000, 1)
            for i in range(0, len(self.latencies), 1000)
        ]
        report["runs"] = await self.runs(agent_id)
        return report

    async def runs(self, agent_id: str) -> dict[str, Any]:
        """Per workflow run: the state it started from and the history it grew."""
        client = await Client.connect(f"127.0.0.1:{self.bench.engine.temporal_port}")
        inputs: list[int] = []
        events: list[int] = []
        history_bytes: list[int] = []
        largest_payload = 0
        async for execution in client.list_workflows(
            f"WorkflowId = '{WORKFLOW_ID_PREFIX}{agent_id}'"
        ):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            history = await handle.fetch_history()
            first = history.events[0].workflow_execution_started_event_attributes
            inputs.append(sum(payload_bytes(p) for p in first.input.payloads))
            events.append(len(history.events))
            history_bytes.append(sum(e.ByteSize() for e in history.events))
            largest_payload = max(largest_payload, max(e.ByteSize() for e in history.events))
        return {
            "count": len(inputs),
            "state_bytes_at_run_start": {
                "p50": statistics.median(inputs),
                "max": max(inputs),
            },
            "history_events_per_run_max": max(events),
            "history_bytes_per_run_max": max(history_bytes),
            "largest_event_bytes": largest_payload,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    async def go(engine: Engine, llm_url: str) -> dict[str, Any]:
        bench = Bench(engine, llm_url)
        try:
            return await LongLife(bench, model(tokens=20)).run(args.turns)
        finally:
            await bench.channel.close(None)

    results = with_engine(go)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "conditions": "engram dev (embedded Temporal, SQLite) on loopback; fake LLM (20 tokens, "
        "no delay) in its own process; default context budget (8,192 tokens)",
        "turns": args.turns,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / f"long-life-{datetime.date.today()}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()

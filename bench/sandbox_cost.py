"""What the strict workflow sandbox costs a worker: `python -m bench.sandbox_cost [--agents 200]`.

The strict sandbox (engram.worker.workflow_runner(strict=True)) imports Engram's workflow code
into every workflow instance's sandbox instead of passing it through. Per mode (each in a process
of its own, against its own in-memory Temporal dev server, scripted LLM): the time to start an
agent and answer its first turn, the worker's memory per dormant agent held in its workflow cache,
and one turn of a dormant agent that is no longer cached (a new sandbox and a replay of its
history: a cache size of 0 makes every turn that). Writes bench/results/sandbox-cost-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from bench.run import RESULTS
from engram.worker import workflow_runner
from engram.workflows.agent_workflow import AgentWorkflow
from tests.workflow_harness import FakeActivities, Harness, local_environment

MODES = ("passthrough", "strict")
# Marks the measuring process's result among the dev server's output.
MARK = "sandbox-cost: "


def rss_mb() -> float:
    """This process's resident memory, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def worker(
    client: Client, fake: FakeActivities, task_queue: str, strict: bool, cache: int
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentWorkflow],
        activities=[
            fake.stream_chat,
            fake.summarize,
            fake.announce,
            fake.archive_events,
            fake.archive_turns,
        ],
        workflow_runner=workflow_runner(strict=strict),
        max_cached_workflows=cache,
    )


async def measure(strict: bool, agents: int, cold_turns: int) -> dict[str, Any]:
    async with local_environment() as env:
        fake = FakeActivities()
        queue = f"bench-{uuid.uuid4()}"
        harness = Harness(env.client, fake, queue)
        result: dict[str, Any] = {}
        async with worker(env.client, fake, queue, strict, cache=agents + 10):
            # One agent first: the worker's own first-use costs are not any agent's.
            await (await harness.create_agent()).ask("warm up", "m0")
            gc.collect()
            before = rss_mb()
            started = []
            t0 = time.perf_counter()
            for _ in range(agents):
                agent = await harness.create_agent()
                t = time.perf_counter()
                await agent.ask("hello", "m1")
                started.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - t0
            gc.collect()
            after = rss_mb()
            cached = harness.agents[1:]
            warm = []
            for i, agent in enumerate(cached[:cold_turns]):
                t = time.perf_counter()
                await agent.ask("again", f"w{i}")
                warm.append(time.perf_counter() - t)
            result.update(
                agents=agents,
                create_and_first_turn_ms_median=statistics.median(started) * 1000,
                create_and_first_turn_ms_total_per_agent=elapsed / agents * 1000,
                worker_rss_mb_before=before,
                worker_rss_mb_after=after,
                rss_kb_per_dormant_agent=(after - before) * 1024 / agents,
                cached_turn_ms_median=statistics.median(warm) * 1000,
            )
        # Every workflow task a new instance: a dormant agent's turn after eviction.
        async with worker(env.client, fake, queue, strict, cache=0):
            cold = []
            for i, agent in enumerate(cached[:cold_turns]):
                t = time.perf_counter()
                await agent.ask("after eviction", f"c{i}")
                cold.append(time.perf_counter() - t)
            result["uncached_turn_ms_median"] = statistics.median(cold) * 1000
        await harness.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--cold-turns", type=int, default=30)
    parser.add_argument("--mode", choices=MODES, help="measure one mode, print JSON (internal)")
    args = parser.parse_args()
    if args.mode:
        measured = asyncio.run(measure(args.mode == "strict", args.agents, args.cold_turns))
        print(MARK + json.dumps(measured))
        return
    results: dict[str, Any] = {"date": datetime.date.today().isoformat()}
    for mode in MODES:
        out = subprocess.run(
            [
                *(sys.executable, "-m", "bench.sandbox_cost", "--mode", mode),
                *("--agents", str(args.agents), "--cold-turns", str(args.cold_turns)),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (line,) = [line for line in out.splitlines() if line.startswith(MARK)]
        results[mode] = json.loads(line.removeprefix(MARK))
        print(mode, json.dumps(results[mode], indent=1))
    target = RESULTS / f"sandbox-cost-{results['date']}.json"
    target.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

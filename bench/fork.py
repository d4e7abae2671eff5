"""ForkAgent on a 10,000-turn agent: `python -m bench.fork [--turns 10000] [--reps 5]`.

The target: a fork of a 10,000-turn agent, at any point, within 2 s. Measures ForkAgent at
several points of one long agent (early, a quarter, the middle, three quarters, the latest
message), and, interleaved with them in the same run, the baselines: GetAgent of the same agent,
CreateAgent, and ForkAgent of a 10-turn agent.

The long agent is seeded, not talked to for ten thousand turns (about a quarter of an hour):
- one real agent has a few real turns through the gateway; its newest turn, events and all, read
  back from its workflow and the store, is the template of every seeded turn (its user message
  renumbered and reworded);
- the seeded agent is what a real one looks like after its latest continue-as-new: its older
  events and turns in the transcript store, a compaction every COMPACT_EVERY turns (each leaves
  its summary with the last turn it folded, as `Turn.summary_after`), the newest VERBATIM turns in
  the workflow's state and the events of the newest of them still held there (fewer than the
  workflow holds before it archives); the workflow is started from that state, as the gateway
  starts a fork's;
- before it is measured it answers one real turn, and GetHistory shows every turn.
Writes bench/results/fork-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from bench.run import RESULTS, Bench, machine, model, with_engine
from engram import TASK_QUEUE, WORKFLOW_ID_PREFIX
from engram.codec import data_converter
from engram.codec.claim_check import with_claim_check
from engram.transcripts import TranscriptStore, open_transcript_store
from engram.v1 import agent_pb2
from engram.vocabulary import (
    MODEL_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    AgentStatus,
    EventKind,
    Query,
    TurnOutcome,
)
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.maintenance import EVENTS_IN_STATE
from engram.workflows.types import AgentState, Event, Turn
from tests.engine import Engine

TARGET_SECONDS = 2.0
# At the default budget (8,192 tokens) a turn below is about 45 tokens: compaction starts past
# three quarters of the budget and keeps the newest half, so each folds about 45 turns and the
# workflow holds between about 90 and 135 verbatim.
COMPACT_EVERY = 45
VERBATIM = 100
SMALL_TURNS = 10
MODEL = model(tokens=20)


def text(i: int) -> str:
    return f"turn {i} " + "x " * 40


def summary_through(i: int) -> str:
    return f"Through turn {i}: " + "they made small talk about the weather. " * 25


async def template(
    bench: Bench, client: Client, store: TranscriptStore
) -> tuple[AgentState, Turn, list[Event]]:
    """A real agent's state after three real turns, its newest turn and that turn's events."""
    agent_id = await bench.create(MODEL)
    for i in range(3):
        await bench.engram_turn(agent_id, text(i))
    handle = client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
    state = await handle.query(Query.STATE, result_type=AgentState)
    stored = await asyncio.to_thread(store.between, agent_id, 0, state.archived_through)
    turn = state.turns[-1]
    events = [e for e in [*stored, *state.events] if turn.first_seq <= e.seq <= turn.last_seq]
    assert turn.outcome == TurnOutcome.COMPLETED and events[0].kind == EventKind.USER_MESSAGE
    assert events[-1].kind == EventKind.FINAL_ANSWER, events
    return state, turn, events


def seeded_state(
    source: AgentState, turn: Turn, events: list[Event], agent_id: str, turns: int
) -> tuple[AgentState, list[Event], list[Turn]]:
    """A `turns`-turn agent as after its latest continue-as-new: its state, and the events and
    turns that are in the store."""
    start = time.time() - turns * 10.0
    seq = 0
    all_events: list[Event] = []
    all_turns: list[Turn] = []
    for i in range(turns):
        message_id = f"seed-{i}"
        first = seq + 1
        at = start + i * 10.0
        for event in events:
            seq += 1
            all_events.append(
                replace(
                    event,
                    seq=seq,
                    text=text(i) if event.kind == EventKind.USER_MESSAGE else event.text,
                    message_id=message_id if event.message_id else "",
                    ts=at + (event.ts - events[0].ts),
                )
            )
        all_turns.append(
            replace(
                turn,
                message_id=message_id,
                user=text(i),
                first_seq=first,
                last_seq=seq,
                started_at=at,
                ended_at=at + (turn.ended_at - turn.started_at),
            )
        )
    archived = (turns - VERBATIM) // COMPACT_EVERY * COMPACT_EVERY
    for index in range(COMPACT_EVERY - 1, archived, COMPACT_EVERY):
        all_turns[index].summary_after = summary_through(index)
    held_turns = max(1, (EVENTS_IN_STATE // 2) // len(events))
    archived_through = all_turns[-held_turns - 1].last_seq
    state = copy.deepcopy(source)
    state.spec.agent_id = agent_id
    state.created_at, state.updated_at = start, time.time()
    state.status = AgentStatus.IDLE
    state.next_seq = seq + 1
    state.events = [e for e in all_events if e.seq > archived_through]
    state.archived_through = archived_through
    state.turns = all_turns[archived:]
    state.archived_turns = state.archived_completed_turns = archived
    state.summary = summary_through(archived - 1) if archived else ""
    state.tokens_used = sum(t.tokens for t in all_turns)
    state.busy_seconds = sum(t.ended_at - t.started_at for t in all_turns)
    stored = [e for e in all_events if e.seq <= archived_through]
    return state, stored, all_turns[:archived]


async def seed(
    client: Client,
    store: TranscriptStore,
    state: AgentState,
    events: list[Event],
    turns: list[Turn],
) -> None:
    agent_id = state.spec.agent_id
    for i in range(0, len(events), 20_000):
        await asyncio.to_thread(store.append, agent_id, events[i : i + 20_000])
    await asyncio.to_thread(store.append_turns, agent_id, 0, turns)
    await client.start_workflow(
        AgentWorkflow.run,
        state,
        id=WORKFLOW_ID_PREFIX + agent_id,
        task_queue=TASK_QUEUE,
        memo={"goal": state.spec.goal, "model": state.spec.model, "created_at": state.created_at},
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(STATUS_ATTRIBUTE, AgentStatus.IDLE),
                SearchAttributePair(MODEL_ATTRIBUTE, state.spec.model),
            ]
        ),
    )


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


def figures(values: list[float]) -> dict[str, Any]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "n": len(values),
    }


async def measure(engine: Engine, llm_url: str, turns: int, reps: int) -> dict[str, Any]:
    bench = Bench(engine, llm_url)
    store = open_transcript_store(engine.data_dir / "transcripts.db")
    client = await Client.connect(
        f"127.0.0.1:{engine.temporal_port}",
        data_converter=with_claim_check(data_converter(None), store),
    )
    stub = bench.stub
    try:
        source, turn, events = await template(bench, client, store)
        long_id = str(uuid.uuid4())
        started = time.perf_counter()
        state, stored, archived = seeded_state(source, turn, events, long_id, turns)
        await seed(client, store, state, stored, archived)
        seeding = time.perf_counter() - started
        await bench.engram_turn(long_id, "are you there?")
        history = await stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=long_id))
        assert len(history.turns) == turns + 1, len(history.turns)
        ends = [t.last_sequence_id for t in history.turns]

        small_id = await bench.create(MODEL)
        for i in range(SMALL_TURNS):
            await bench.engram_turn(small_id, text(i))
        small_last = (
            await stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=small_id))
        ).last_sequence_id

        points = {
            "early (turn 10)": ends[9],
            "a quarter": ends[turns // 4 - 1],
            "middle": ends[turns // 2 - 1],
            "three quarters": ends[3 * turns // 4 - 1],
            "latest": ends[-1],
        }

        def fork(agent_id: str, at: int) -> Callable[[], Awaitable[Any]]:
            request = agent_pb2.ForkAgentRequest(agent_id=agent_id, at_sequence=at)
            return lambda: stub.ForkAgent(request, timeout=120)

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            f"ForkAgent, {turns:,}-turn agent, {name}": fork(long_id, at)
            for name, at in points.items()
        }
        calls |= {
            f"GetAgent, {turns:,}-turn agent": lambda: stub.GetAgent(
                agent_pb2.GetAgentRequest(agent_id=long_id)
            ),
            "CreateAgent": lambda: bench.create(MODEL),
            f"ForkAgent, {SMALL_TURNS}-turn agent, latest": fork(small_id, small_last),
        }
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for rep in range(reps):
            # Each round in another order, so that no call always meets a warmer machine.
            order = list(calls)
            order = order[rep % len(order) :] + order[: rep % len(order)]
            for name in order:
                samples[name].append(await timed(calls[name]))
            print(f"round {rep + 1}/{reps} done", flush=True)

        # One fork checked: the middle one has exactly the turns up to its point.
        middle = await stub.ForkAgent(
            agent_pb2.ForkAgentRequest(agent_id=long_id, at_sequence=points["middle"])
        )
        kept = await stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=middle.agent_id))
        assert len(kept.turns) == turns // 2

        results = {name: figures(values) for name, values in samples.items()}
        forks = [
            v
            for name, values in samples.items()
            if name.startswith("ForkAgent, " + f"{turns:,}")
            for v in values
        ]
        baseline = statistics.median(samples["CreateAgent"])
        return {
            "long_agent": {
                "turns": turns,
                "events": state.next_seq - 1,
                "events_per_turn": len(events),
                "archived_turns": state.archived_turns,
                "verbatim_turns": len(state.turns),
                "held_events": len(state.events),
                "seeding_seconds": round(seeding, 1),
            },
            "points": points,
            "results": results,
            "forks_of_the_long_agent": figures(forks),
            "target_ms": TARGET_SECONDS * 1000,
            "within_target": max(forks) <= TARGET_SECONDS,
            "fork_median_over_create_agent_median": round(statistics.median(forks) / baseline, 1),
            "fork_median_over_get_agent_median": round(
                statistics.median(forks)
                / statistics.median(samples[f"GetAgent, {turns:,}-turn agent"]),
                1,
            ),
        }
    finally:
        await bench.channel.close(None)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    async def go(engine: Engine, llm_url: str) -> dict[str, Any]:
        return await measure(engine, llm_url, args.turns, args.reps)

    results = with_engine(go)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "conditions": "engram dev (embedded Temporal, SQLite) on loopback; fake LLM (20 tokens, "
        "no delay) in its own process; the long agent seeded as described in bench/fork.py",
        **results,
    }
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / f"fork-{datetime.date.today()}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()

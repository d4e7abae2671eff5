"""The token path, measured: `python -m bench.token_path [--quick]`.

Starts its own engine (as `engram dev`) and the fake LLM in its own process, then measures, each
against a baseline taken in the same run:
  1. time to the durability ack (`user_message`), first token and last token through Engram vs the
     same request sent straight to the LLM with the `openai` client (interleaved), for a 0 ms LLM,
     tokens paced 20 ms apart, a 50 ms and a 300 ms LLM, and whether every turn was recorded
     (its update accepted) before its first token reached the client;
  2. where a turn's milliseconds go, step by step (client clocks against the agent's history);
  3. CreateAgent, against a bare Temporal workflow start on the same server;
  4. history events and engine CPU per turn, and turns/s at 1 / 10 / 100 agents;
  5. tokens/s delivered by one gateway to 100 concurrent streams of a fast model, and to one;
  6. 20 clients that stop reading mid-reply (~9,000 tokens each): the engine's memory, and a new
     turn's time to first token while they and 20 long replies stream.
Prints a table and writes bench/results/token-path-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.run import (
    RESULTS,
    Bench,
    ClockedTurn,
    cpu_seconds,
    machine,
    model,
    rss_mb,
    summary,
    with_engine,
)
from engram import WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2
from tests.engine import Engine, children


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


async def paired(bench: Bench, model_name: str, rounds: int) -> dict[str, Any]:
    """Engram and direct turns interleaved (alternating which goes first), one growing agent."""
    agent_id = await bench.create(model_name)
    history = [{"role": "system", "content": "Your goal: benchmark"}]
    await bench.clocked_turn(agent_id)
    await bench.direct_turn(model_name, history)
    engram: list[ClockedTurn] = []
    direct: list[tuple[float, float, int]] = []
    for i in range(rounds):
        if i % 2:
            engram.append(await bench.clocked_turn(agent_id))
            direct.append(await bench.direct_turn(model_name, history))
        else:
            direct.append(await bench.direct_turn(model_name, history))
            engram.append(await bench.clocked_turn(agent_id))
    accepted = await accepted_times(bench, agent_id)
    # The durability order, turn by turn: the message was recorded before its first token was
    # shown (server and client clocks are the machine's one clock).
    in_order = [
        at < e.sent + e.first for at, e in zip(accepted[-len(engram) :], engram, strict=True)
    ]
    ttft_over = [e.first - d[0] for e, d in zip(engram, direct, strict=True)]
    last_over = [e.last_text - d[1] for e, d in zip(engram, direct, strict=True)]
    end_over = [e.last - d[1] for e, d in zip(engram, direct, strict=True)]
    return {
        "ack_ms": summary([e.ack for e in engram]),
        "ack_before_first_token": sum(e.ack < e.first for e in engram) / len(engram),
        "accepted_before_first_token": f"{sum(in_order)}/{len(in_order)}",
        "engram_ttft_ms": summary([e.first for e in engram]),
        "direct_ttft_ms": summary([d[0] for d in direct]),
        "ttft_overhead_ms": summary(ttft_over),
        "ttft_ratio_p50": round(
            statistics.median(e.first for e in engram) / statistics.median(d[0] for d in direct), 4
        ),
        "last_token_overhead_ms": summary(last_over),
        "turn_end_overhead_ms": summary(end_over),
        "text_messages_per_turn": statistics.median(e.texts for e in engram),
    }


async def accepted_times(bench: Bench, agent_id: str) -> list[float]:
    """When the server recorded each of the agent's messages as accepted, in order."""
    client = await Client.connect(f"127.0.0.1:{bench.engine.temporal_port}")
    events = (
        await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).fetch_history()
    ).events
    return [
        e.event_time.ToDatetime(datetime.UTC).timestamp()
        for e in events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]


async def profile(bench: Bench, model_name: str, rounds: int) -> dict[str, Any]:
    """Where a turn's time goes: client clocks against the agent's history events (one clock:
    client, engine and server share the machine). Medians in ms."""
    agent_id = await bench.create(model_name)
    await bench.clocked_turn(agent_id)
    client = await Client.connect(f"127.0.0.1:{bench.engine.temporal_port}")
    handle = client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
    before = len((await handle.fetch_history()).events)
    turns = [await bench.clocked_turn(agent_id) for _ in range(rounds)]
    events = (await handle.fetch_history()).events
    per_turn = (len(events) - before) / rounds
    bytes_per_turn = sum(e.ByteSize() for e in events[before:]) / rounds
    marks: list[dict[str, float]] = []
    current: dict[str, float] = {}
    kinds: dict[str, int] = {}
    for event in events[before:]:
        kind = event.WhichOneof("attributes") or ""
        kinds[kind.removesuffix("_event_attributes")] = (
            kinds.get(kind.removesuffix("_event_attributes"), 0) + 1
        )
        at = event.event_time.ToDatetime(datetime.UTC).timestamp()
        name = {
            "workflow_execution_update_accepted_event_attributes": "accepted",
            "activity_task_scheduled_event_attributes": "scheduled",
            "activity_task_started_event_attributes": "started",
            "activity_task_completed_event_attributes": "completed",
            "workflow_execution_update_completed_event_attributes": "update_completed",
        }.get(kind)
        if name is not None:
            current.setdefault(name, at)
        if name == "update_completed":
            marks.append(current)
            current = {}
    pairs = list(zip(turns, marks, strict=True))

    def step(values: list[float]) -> float:
        return median_ms(values)

    return {
        "events_per_turn": round(per_turn, 2),
        "history_bytes_per_turn": round(bytes_per_turn),
        "events_by_kind": {k: round(v / rounds, 2) for k, v in sorted(kinds.items())},
        "steps_ms": {
            "send -> update accepted (recorded)": step([m["accepted"] - t.sent for t, m in pairs]),
            "accepted -> ack at client": step([t.sent + t.ack - m["accepted"] for t, m in pairs]),
            "accepted -> activity scheduled": step(
                [m["scheduled"] - m["accepted"] for t, m in pairs]
            ),
            "scheduled -> first token at client": step(
                [t.sent + t.first - m["scheduled"] for t, m in pairs]
            ),
            "activity completed -> update completed (recorded)": step(
                [m["update_completed"] - m["completed"] for t, m in pairs]
            ),
            "update completed -> last message at client": step(
                [t.sent + t.last - m["update_completed"] for t, m in pairs]
            ),
            "client: ack": step([t.ack for t in turns]),
            "client: first token": step([t.first for t in turns]),
            "client: last token": step([t.last_text for t in turns]),
            "client: final answer": step([t.last for t in turns]),
        },
    }


async def create_agent(bench: Bench, rounds: int) -> dict[str, Any]:
    """CreateAgent, interleaved with a bare workflow start (no worker needed) on the same server:
    the floor a durable Temporal start sets on this machine."""
    client = await Client.connect(f"127.0.0.1:{bench.engine.temporal_port}")
    creates: list[float] = []
    starts: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        await bench.create(model())
        creates.append(time.perf_counter() - start)
        start = time.perf_counter()
        handle = await client.start_workflow(
            "bench-floor", id=f"bench-floor-{uuid.uuid4()}", task_queue="bench-floor"
        )
        starts.append(time.perf_counter() - start)
        await handle.terminate()
    return {"create_agent_ms": summary(creates), "bare_temporal_start_ms": summary(starts)}


def engine_pids(engine: Engine) -> tuple[int, int]:
    assert engine.process is not None
    [temporal] = [pid for pid, _ in children(engine.process.pid)]
    return engine.process.pid, temporal


async def throughput(bench: Bench, agents: int, turns: int) -> dict[str, Any]:
    ids = await asyncio.gather(*(bench.create(model(tokens=20)) for _ in range(agents)))
    await asyncio.gather(*(bench.clocked_turn(a) for a in ids))
    engine, temporal = engine_pids(bench.engine)
    cpu = (cpu_seconds(engine), cpu_seconds(temporal))
    start = time.perf_counter()

    async def converse(agent_id: str) -> None:
        for _ in range(turns):
            await bench.clocked_turn(agent_id)

    await asyncio.gather(*(converse(a) for a in ids))
    elapsed = time.perf_counter() - start
    total = agents * turns
    return {
        "agents": agents,
        "turns_per_s": round(total / elapsed, 1),
        "engine_cpu_ms_per_turn": round((cpu_seconds(engine) - cpu[0]) / total * 1000, 2),
        "temporal_cpu_ms_per_turn": round((cpu_seconds(temporal) - cpu[1]) / total * 1000, 2),
    }


async def fan_out(bench: Bench, streams: int, tokens: int) -> dict[str, Any]:
    """Tokens/s one gateway delivers to `streams` concurrent replies of a fast model, and what the
    model produces for one stream straight to the client."""
    name = model(tokens=tokens)
    ids = await asyncio.gather(*(bench.create(name) for _ in range(streams)))
    history = [{"role": "system", "content": "Your goal: benchmark"}]
    direct = await bench.direct_turn(name, history)
    single = await bench.clocked_turn(ids[0])
    start = time.perf_counter()
    turns = await asyncio.gather(*(bench.clocked_turn(a) for a in ids))
    elapsed = time.perf_counter() - start
    delivered = sum(t.tokens for t in turns)
    if delivered != streams * tokens or single.tokens != tokens:
        raise RuntimeError(f"tokens lost: {delivered} of {streams * tokens}")
    return {
        "streams": streams,
        "tokens_per_stream": tokens,
        "total_tokens_per_s": round(delivered / elapsed),
        # Start to final answer (TTFT and the turn's end included), and while the reply streams
        # (first to last text), against the same reply straight from the model.
        "one_stream_tokens_per_s": round(tokens / single.last),
        "model_tokens_per_s_direct": round(tokens / direct[1]),
        "one_stream_streaming_tokens_per_s": round(tokens / (single.last_text - single.first)),
        "model_streaming_tokens_per_s_direct": round(tokens / (direct[1] - direct[0])),
        "text_messages_per_stream_p50": statistics.median(t.texts for t in turns),
    }


async def stalled_readers(
    bench: Bench, stalled: int, reading: int, tokens: int, probes: int
) -> dict[str, Any]:
    """`stalled` clients each ask for a long reply and stop reading after its first message;
    meanwhile `reading` more read long replies in full and a new agent's turns are timed."""
    engine, _ = engine_pids(bench.engine)
    probe_agent = await bench.create(model(tokens=20))
    await bench.clocked_turn(probe_agent)
    idle = [(await bench.clocked_turn(probe_agent)).first for _ in range(probes)]
    # The same probe straight to the LLM: the fake LLM is shared, and its own slowdown under
    # the load is not the engine's.
    history = [{"role": "system", "content": "Your goal: benchmark"}]
    idle_direct = [
        (await bench.direct_turn(model(tokens=20), history[:1]))[0] for _ in range(probes)
    ]
    rss_before = rss_mb(engine)
    long_name = model(tokens=tokens)
    stalled_ids = await asyncio.gather(*(bench.create(long_name) for _ in range(stalled)))
    reading_ids = await asyncio.gather(*(bench.create(long_name) for _ in range(reading)))
    calls = []
    for agent_id in stalled_ids:
        call = bench.stub.Chat(
            iter(
                [
                    agent_pb2.ClientMessage(
                        agent_id=agent_id, user_input=agent_pb2.UserInput(content="long")
                    )
                ]
            )
        )
        await call.read()  # the ack; then this client reads no more
        calls.append(call)
    started = time.perf_counter()
    readers_task = asyncio.gather(*(bench.clocked_turn(a) for a in reading_ids))
    loaded: list[float] = []
    loaded_direct: list[float] = []
    peak = rss_before
    # At least `probes` while the long replies are generated (the stalled ones too, when no
    # one reads in full), at most three times as many.
    while (not readers_task.done() or len(loaded) < probes) and len(loaded) < probes * 3:
        loaded.append((await bench.clocked_turn(probe_agent)).first)
        loaded_direct.append((await bench.direct_turn(model(tokens=20), history[:1]))[0])
        peak = max(peak, rss_mb(engine))
    await readers_task
    streamed = time.perf_counter()
    await asyncio.sleep(1)
    rss_stalled = rss_mb(engine)
    for call in calls:
        call.cancel()
    await asyncio.sleep(2)
    return {
        "stalled_readers": stalled,
        "reading_clients": reading,
        "tokens_per_reply": tokens,
        "idle_ttft_ms": summary(idle),
        "loaded_ttft_ms": summary(loaded),
        "loaded_over_idle_p50": round(statistics.median(loaded) / statistics.median(idle), 2),
        "direct_idle_ttft_ms": summary(idle_direct),
        "direct_loaded_ttft_ms": summary(loaded_direct),
        "long_replies_took_s": round(streamed - started, 2),
        "rss_mb": {
            "before": rss_before,
            "peak_while_streaming": peak,
            "with_stalled_readers": rss_stalled,
            "after_cancel": rss_mb(engine),
        },
    }


async def run(engine: Engine, llm_url: str, quick: bool) -> dict[str, Any]:
    bench = Bench(engine, llm_url)
    rounds = 30 if quick else 100
    results: dict[str, Any] = {}
    await bench.create(model())
    steps: list[tuple[str, Any]] = [
        ("create", lambda: create_agent(bench, rounds)),
        ("llm_0ms", lambda: paired(bench, model(tokens=20), rounds)),
        ("llm_paced_20ms", lambda: paired(bench, model(delay_ms=20, tokens=20), rounds // 2)),
        ("llm_50ms", lambda: paired(bench, model(ttft_ms=50, tokens=20), rounds // 2)),
        ("llm_300ms", lambda: paired(bench, model(ttft_ms=300, tokens=20), rounds // 4)),
        ("profile", lambda: profile(bench, model(tokens=20), rounds // 2)),
    ]
    for name, step in steps:
        results[name] = await step()
        print(name, json.dumps(results[name]), flush=True)
    results["throughput"] = [
        await throughput(bench, n, t) for n, t in ((1, 40), (10, 8), (100, 2 if quick else 4))
    ]
    print("throughput", json.dumps(results["throughput"]), flush=True)
    results["fan_out"] = await fan_out(bench, 100, 500 if quick else 2000)
    print("fan_out", json.dumps(results["fan_out"]), flush=True)
    results["stalled_readers"] = await stalled_readers(
        bench, 20, 20, 3000 if quick else 9000, 10 if quick else 20
    )
    print("stalled_readers", json.dumps(results["stalled_readers"]), flush=True)
    results["stalled_100"] = await stalled_readers(bench, 100, 0, 3000, 10)
    print("stalled_100", json.dumps(results["stalled_100"]), flush=True)
    await bench.channel.close(None)
    return results


def table(results: dict[str, Any]) -> str:
    rows = [("figure", "result")]
    c = results["create"]
    rows.append(
        (
            "CreateAgent p50 (bare Temporal start p50)",
            f"{c['create_agent_ms']['p50']} ms ({c['bare_temporal_start_ms']['p50']} ms)",
        )
    )
    for key, label in (
        ("llm_0ms", "0 ms LLM"),
        ("llm_paced_20ms", "tokens 20 ms apart"),
        ("llm_50ms", "50 ms LLM"),
        ("llm_300ms", "300 ms LLM"),
    ):
        if key not in results:
            continue
        r = results[key]
        rows.append(
            (
                f"{label}: TTFT overhead p50 / p99, ratio",
                f"{r['ttft_overhead_ms']['p50']} / {r['ttft_overhead_ms']['p99']} ms, "
                f"x{r['ttft_ratio_p50']}",
            )
        )
        rows.append(
            (
                f"{label}: last token / final answer overhead p50",
                f"{r['last_token_overhead_ms']['p50']} / {r['turn_end_overhead_ms']['p50']} ms",
            )
        )
        rows.append(
            (
                f"{label}: ack p50 (arrived before the first token)",
                f"{r['ack_ms']['p50']} ms ({r['ack_before_first_token']:.0%})",
            )
        )
        rows.append(
            (
                f"{label}: turns recorded (accepted) before their first token was shown",
                r["accepted_before_first_token"],
            )
        )
    p = results["profile"]
    rows.append(("history events per turn", str(p["events_per_turn"])))
    rows.append(("history bytes per turn", str(p.get("history_bytes_per_turn", "—"))))
    for step, ms in p["steps_ms"].items():
        rows.append((f"  step: {step}", f"{ms} ms"))
    for t in results["throughput"]:
        rows.append(
            (
                f"{t['agents']} agents: turns/s, CPU ms/turn engine + Temporal",
                f"{t['turns_per_s']}, {t['engine_cpu_ms_per_turn']} + "
                f"{t['temporal_cpu_ms_per_turn']}",
            )
        )
    f = results["fan_out"]
    rows.append(
        (
            f"{f['streams']} streams x {f['tokens_per_stream']} tokens: total tokens/s",
            f"{f['total_tokens_per_s']} ({f['text_messages_per_stream_p50']} messages/stream)",
        )
    )
    rows.append(
        (
            "one stream: tokens/s delivered vs model direct (whole turn; while streaming)",
            f"{f['one_stream_tokens_per_s']} vs {f['model_tokens_per_s_direct']}; "
            f"{f['one_stream_streaming_tokens_per_s']} vs "
            f"{f['model_streaming_tokens_per_s_direct']}",
        )
    )
    s = results["stalled_readers"]
    rows.append(
        (
            f"{s['stalled_readers']} stalled + {s['reading_clients']} streaming readers: "
            "new TTFT p50 vs idle",
            f"{s['loaded_ttft_ms']['p50']} vs {s['idle_ttft_ms']['p50']} ms "
            f"(x{s['loaded_over_idle_p50']})",
        )
    )
    rows.append(
        (
            "  same probe straight to the LLM: loaded vs idle",
            f"{s['direct_loaded_ttft_ms']['p50']} vs {s['direct_idle_ttft_ms']['p50']} ms",
        )
    )
    rows.append(("  engine RSS MB", json.dumps(s["rss_mb"])))
    h = results["stalled_100"]
    rows.append(
        (
            f"{h['stalled_readers']} stalled readers x {h['tokens_per_reply']} tokens: "
            "engine RSS MB",
            json.dumps(h["rss_mb"]),
        )
    )
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a.ljust(width)}  {b}" for a, b in rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about two minutes)")
    parser.add_argument("--output", type=Path, help="results file")
    args = parser.parse_args()
    results = with_engine(lambda engine, llm_url: run(engine, llm_url, args.quick))
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": args.quick,
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / (
        f"token-path-{datetime.date.today()}{'-quick' if args.quick else ''}.json"
    )
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()

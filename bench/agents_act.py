"""Agents that act, measured: `python -m bench.agents_act [--samples 30] [--steps 1000]`.

Starts its own engine (as `engram dev`, with the test worker tools) and an in-process fake
OpenAI-compatible LLM answering at once, then measures, each against a baseline in the same run:
  1. a turn with one tool call (LLM -> tool activity -> LLM) through Engram, against the same two
     LLM requests made straight with the `openai` client and the same function called in between
     (interleaved samples);
  2. an autonomous run of `--steps` steps, each one LLM call and one tool call: steps per second,
     history events and bytes per step, and the state each continue-as-new carries, against the
     same loop written as plain Python calling the LLM and the function directly.
Prints the figures and writes bench/results/agents-act-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import grpc
import openai
from openai.types.chat import ChatCompletionMessageParam
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.engine import Engine
from tests.fake_llm import FakeLLM, ToolUse
from tests.tool_module import add

RESULTS = Path(__file__).resolve().parent / "results"
# The agent's tool: `add` runs as a regular activity; `fast_add` (read-only, fast) as a local one.
TOOLS = ("add", "fast_add")
tool_name = "add"


def call_text() -> str:
    return f'call {tool_name} {{"a": 20, "b": 22}}'


ADD_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


class Model:
    """The fake LLM: a tool call, then the result; in a run, `steps` calls, then finish."""

    def __init__(self) -> None:
        self.run_steps = 0
        self.steps = 0

    def __call__(self, messages: list[dict[str, Any]]) -> str | ToolUse:
        last = messages[-1]
        in_run = any("Work on your goal" in str(m.get("content", "")) for m in messages)
        if in_run:
            self.run_steps += 1
            if self.run_steps > self.steps:
                return ToolUse([("finish", '{"answer": "done"}')])
            return ToolUse([(tool_name, f'{{"a": {self.run_steps}, "b": 1}}')])
        if last["role"] == "tool":
            return f"The sum is {last['content']}."
        return ToolUse([(tool_name, '{"a": 20, "b": 22}')])


async def engram_tool_turn(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> float:
    message = agent_pb2.ClientMessage(
        agent_id=agent_id, user_input=agent_pb2.UserInput(content=call_text())
    )
    start = time.perf_counter()
    async for reply in stub.Chat(iter([message])):
        if reply.HasField("final_answer"):
            assert reply.final_answer.content == "The sum is 42.", reply
    return time.perf_counter() - start


async def streamed_call(stream: Any) -> tuple[str, str, str]:
    """The one tool call a streamed reply makes: its id, name and arguments."""
    call_id, name, arguments = "", "", ""
    async for chunk in stream:
        for choice in chunk.choices:
            for fragment in choice.delta.tool_calls or []:
                call_id = fragment.id or call_id
                if fragment.function is not None:
                    name = name or fragment.function.name or ""
                    arguments += fragment.function.arguments or ""
    return call_id, name, arguments


def tool_exchange(call_id: str, name: str, arguments: str, output: str) -> list[dict[str, Any]]:
    """The call and its result, as the next request carries them."""
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": output},
    ]


async def direct_tool_turn(client: openai.AsyncOpenAI) -> float:
    """The same exchange without Engram: stream, run the tool, stream again."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": call_text()}]
    start = time.perf_counter()
    stream = await client.chat.completions.create(
        model="m",
        messages=cast(list[ChatCompletionMessageParam], messages),
        stream=True,
        tools=cast(Any, [ADD_TOOL]),
    )
    call_id, name, arguments = await streamed_call(stream)
    messages += tool_exchange(call_id, name, arguments, str(add(**json.loads(arguments))))
    stream = await client.chat.completions.create(
        model="m", messages=cast(list[ChatCompletionMessageParam], messages), stream=True
    )
    async for _ in stream:
        pass
    return time.perf_counter() - start


async def tool_overhead(engine: Engine, llm: FakeLLM, samples: int) -> dict[str, Any]:
    channel = grpc.aio.insecure_channel(engine.address)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    client = openai.AsyncOpenAI(base_url=llm.url, api_key="unused", max_retries=0)
    engram_times, direct_times = [], []
    for _ in range(3):  # warm both paths up
        agent_id = (
            await stub.CreateAgent(
                agent_pb2.CreateAgentRequest(
                    goal="g", model="m", tools=[agent_pb2.Tool(name=tool_name)]
                )
            )
        ).agent_id
        await engram_tool_turn(stub, agent_id)
        await direct_tool_turn(client)
    for _ in range(samples):
        # A fresh agent per sample: the prompt stays the size the direct baseline sends.
        agent_id = (
            await stub.CreateAgent(
                agent_pb2.CreateAgentRequest(
                    goal="g", model="m", tools=[agent_pb2.Tool(name=tool_name)]
                )
            )
        ).agent_id
        engram_times.append(await engram_tool_turn(stub, agent_id))
        direct_times.append(await direct_tool_turn(client))
    await channel.close(None)
    engram_ms = statistics.median(engram_times) * 1000
    direct_ms = statistics.median(direct_times) * 1000
    return {
        "samples": samples,
        "engram_turn_p50_ms": round(engram_ms, 1),
        "direct_turn_p50_ms": round(direct_ms, 1),
        "overhead_p50_ms": round(engram_ms - direct_ms, 1),
        "ratio": round(engram_ms / direct_ms, 2),
    }


async def autonomous_run(engine: Engine, llm: FakeLLM, model: Model, steps: int) -> dict[str, Any]:
    model.run_steps, model.steps = 0, steps
    channel = grpc.aio.insecure_channel(engine.address)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    start = time.perf_counter()
    agent_id = (
        await stub.CreateAgent(
            agent_pb2.CreateAgentRequest(
                goal="Add numbers, one step at a time.",
                model="m",
                tools=[agent_pb2.Tool(name=tool_name)],
                config=agent_pb2.AgentConfig(autonomous=True, max_steps=steps + 10),
            )
        )
    ).agent_id
    while True:
        agent = await stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
        if agent.stats.total_steps and not agent.HasField("run"):
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    await channel.close(None)

    temporal = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    runs: list[dict[str, int]] = []
    async for execution in temporal.list_workflows(
        f"WorkflowId = '{WORKFLOW_ID_PREFIX}{agent_id}'"
    ):
        history = await temporal.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        runs.append(
            {
                "events": len(history.events),
                "bytes": sum(e.ByteSize() for e in history.events),
                "state_bytes": sum(p.ByteSize() for p in started.input.payloads),
            }
        )
    total_events = sum(r["events"] for r in runs)
    total_bytes = sum(r["bytes"] for r in runs)
    return {
        "steps": agent.stats.total_steps,
        "seconds": round(elapsed, 2),
        "steps_per_second": round(agent.stats.total_steps / elapsed, 1),
        "runs": len(runs),
        "history_events_per_step": round(total_events / agent.stats.total_steps, 1),
        "history_bytes_per_step": round(total_bytes / agent.stats.total_steps),
        "state_bytes_at_each_run_start": sorted(r["state_bytes"] for r in runs),
    }


async def plain_loop(llm: FakeLLM, model: Model, steps: int) -> dict[str, Any]:
    """The same loop as plain Python: no durability, nothing recorded."""
    model.run_steps, model.steps = 0, steps
    client = openai.AsyncOpenAI(base_url=llm.url, api_key="unused", max_retries=0)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Work on your goal now: add numbers, one step at a time."}
    ]
    start = time.perf_counter()
    done = 0
    while True:
        stream = await client.chat.completions.create(
            model="m",
            # The goal, then the newest rounds, as a run's prompt carries them.
            messages=cast(list[ChatCompletionMessageParam], messages[:1] + messages[1:][-8:]),
            stream=True,
            tools=cast(Any, [ADD_TOOL]),
        )
        call_id, name, arguments = await streamed_call(stream)
        done += 1
        if name == "finish":
            break
        messages += tool_exchange(call_id, name, arguments, str(add(**json.loads(arguments))))
    elapsed = time.perf_counter() - start
    return {
        "steps": done,
        "seconds": round(elapsed, 2),
        "steps_per_second": round(done / elapsed, 1),
    }


async def main(samples: int, steps: int) -> None:
    model = Model()
    llm = FakeLLM(reply=model).start()
    with tempfile.TemporaryDirectory() as data:
        engine = Engine(Path(data), llm.url, ENGRAM_TOOLS="tests.tool_module").start()
        try:
            overhead = await tool_overhead(engine, llm, samples)
            print(f"tool call turn: {overhead}", flush=True)
            run = await autonomous_run(engine, llm, model, steps)
            print(f"autonomous run: {run}", flush=True)
            plain = await plain_loop(llm, model, steps)
            print(f"plain loop:     {plain}", flush=True)
        finally:
            engine.stop()
    llm.stop()
    result = {
        "date": datetime.date.today().isoformat(),
        "tool": tool_name,
        "tool_call_turn": overhead,
        "autonomous_run": run,
        "plain_python_loop": plain,
        "run_vs_plain_step_ratio": round(plain["steps_per_second"] / run["steps_per_second"], 1),
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if tool_name == "add" else f"-{tool_name}"
    target = RESULTS / f"agents-act-{result['date']}{suffix}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--tool", choices=TOOLS, default="add", help="the agent's tool")
    options = parser.parse_args()
    tool_name = options.tool
    asyncio.run(main(options.samples, options.steps))

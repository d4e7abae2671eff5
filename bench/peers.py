"""Engram against its peers, per chat turn: `python -m bench.peers [--turns N] [--quick]`.

One fake OpenAI-compatible LLM (tests/fake_llm.py) runs in its own process. Each system below
holds one growing conversation, sends all of it to the LLM every turn and streams the reply back to
a client in this process; each of its turns is paired with the same request made straight to the
LLM with the `openai` client (the baseline, which keeps its own copy of the conversation), in
alternating order:
  1. Engram: `engram dev` (embedded Temporal on SQLite), through the gateway's Chat stream;
  2. Temporal Workflow Streams (temporalio.contrib.workflow_streams): a workflow holds the
     conversation and takes each user message as a signal, an activity calls the LLM and
     publishes the tokens on the workflow's stream, the client subscribes to it; a separate
     `temporal server start-dev` (configured as Engram's), the worker in this process;
  3. DBOS on SQLite: a workflow per turn whose step calls the LLM and writes each token with
     DBOS.write_stream_async; the client reads them with DBOS.read_stream_async;
  4. LangGraph as a library with its SQLite checkpointer (AsyncSqliteSaver, durability "sync"):
     a graph per conversation whose node streams the LLM through the custom stream writer.
Each with the LLM's tokens unpaced and 20 ms apart. Reports the overhead over the baseline of the
time to first token and to the end of the reply (p50/p99), prints a table and writes
bench/results/peers-<date>.json. A system that cannot run gets its reason in both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib
import json
import operator
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar, cast

import openai
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RawValue, RetryPolicy
from temporalio.contrib.workflow_streams import (
    WorkflowStream,
    WorkflowStreamClient,
    WorkflowStreamItem,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench.run import RESULTS, Bench, machine, model, start_fake_llm, stream_direct, summary
from engram.dev_server import start_dev_server
from engram.processes import wait_for_port
from engram.v1 import agent_pb2
from tests.engine import Engine, free_port

# The conversation's first message: what Engram's prompt starts with for goal "benchmark", and
# what Bench.paired's baseline sends.
SYSTEM_PROMPT = "Your goal: benchmark"
WARMUP_TURNS = 2
TURN_TIMEOUT = 60.0
SETTINGS = {
    "unpaced": model(ttft_ms=0, delay_ms=0, tokens=20),
    "paced_20ms": model(ttft_ms=0, delay_ms=20, tokens=20),
}
Messages = list[dict[str, str]]
SYSTEMS = ["engram", "temporal_workflow_streams", "dbos", "langgraph"]


@dataclass
class Turn:
    """One turn at the client, in seconds from sending the message."""

    ttft: float
    total: float
    chunks: int
    # The reply as streamed; None where the system's turn does not give it (Engram's is checked
    # against its durable history instead).
    text: str | None = None
    last_token: float | None = None


SystemTurn = Callable[[str], Awaitable[Turn]]


def llm_client(llm_url: str) -> openai.AsyncOpenAI:
    """One client per system, reused across turns, as Engram's worker and the baseline do."""
    return openai.AsyncOpenAI(base_url=llm_url, api_key="unused", max_retries=0)


# --- Temporal Workflow Streams -----------------------------------------------------------------

TOPIC_DELTA = "delta"
TOPIC_COMPLETE = "complete"
TEMPORAL_TASK_QUEUE = "bench-peers"
# As the Workflow Streams guide's LLM example: 200 ms batches, the first delta flushed at once.
PUBLISH_BATCH_INTERVAL = timedelta(milliseconds=200)


@dataclass
class ConversationInput:
    model: str
    system: str


@dataclass
class TurnRequest:
    model: str
    messages: Messages = field(default_factory=list)


@dataclass
class TextDelta:
    text: str


@dataclass
class TextComplete:
    full_text: str


class StreamingActivities:
    def __init__(self, llm_url: str) -> None:
        self.llm = llm_client(llm_url)

    @activity.defn(name="stream_completion")
    async def stream_completion(self, request: TurnRequest) -> str:
        """Streams the reply onto the parent workflow's stream; returns it whole."""
        stream_client = WorkflowStreamClient.from_within_activity(
            batch_interval=PUBLISH_BATCH_INTERVAL
        )
        pieces: list[str] = []
        async with stream_client:
            deltas = stream_client.topic(TOPIC_DELTA, type=TextDelta)
            complete = stream_client.topic(TOPIC_COMPLETE, type=TextComplete)
            async for token in stream_direct(self.llm, request.model, request.messages):
                deltas.publish(TextDelta(text=token), force_flush=not pieces)
                pieces.append(token)
            complete.publish(TextComplete(full_text="".join(pieces)))
            # Leaving the client cancels its flusher; with a signal of the forced flush still in
            # flight that cancel is lost and the activity never ends (temporalio 1.35.0). Flushing
            # first leaves nothing in flight; the last batch is sent now either way.
            await stream_client.flush()
        return "".join(pieces)


@workflow.defn
class PeerConversation:
    """Holds the conversation; each user message (a signal) runs one streaming activity."""

    @workflow.init
    def __init__(self, start: ConversationInput) -> None:
        self.stream = WorkflowStream()
        self.messages: Messages = [{"role": "system", "content": start.system}]
        self.inbox: list[str] = []
        self.closing = False

    @workflow.signal
    def user_message(self, text: str) -> None:
        self.inbox.append(text)

    @workflow.signal
    def close(self) -> None:
        self.closing = True

    @workflow.run
    async def run(self, start: ConversationInput) -> int:
        while True:
            await workflow.wait_condition(lambda: bool(self.inbox) or self.closing)
            if not self.inbox:
                break
            self.messages.append({"role": "user", "content": self.inbox.pop(0)})
            reply = await workflow.execute_activity_method(
                StreamingActivities.stream_completion,
                TurnRequest(model=start.model, messages=list(self.messages)),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            self.messages.append({"role": "assistant", "content": reply})
        self.stream.detach_pollers()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return len(self.messages)


class TemporalConversation:
    """The client side: sends messages, and reads the stream from one long-lived subscription (as
    a UI's backend would), whose items a background task hands over as they arrive."""

    def __init__(self, client: Client, handle: WorkflowHandle[Any, Any]) -> None:
        self.handle = handle
        self.converter = client.data_converter.payload_converter
        self.stream = WorkflowStreamClient.create(client, handle.id)
        self.items: asyncio.Queue[tuple[float, WorkflowStreamItem[RawValue]]] = asyncio.Queue()
        self.consumer = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for item in self.stream.subscribe(
            [TOPIC_DELTA, TOPIC_COMPLETE], result_type=RawValue
        ):
            self.items.put_nowait((time.perf_counter(), item))

    async def _next(self) -> tuple[float, WorkflowStreamItem[RawValue]]:
        getter = asyncio.ensure_future(self.items.get())
        done, _ = await asyncio.wait(
            [getter, self.consumer], timeout=TURN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.consumer in done:
            raise RuntimeError(f"the stream's subscription ended: {self.consumer!r}")
        raise TimeoutError(f"no stream item within {TURN_TIMEOUT:.0f} s")

    async def turn(self, text: str) -> Turn:
        start = time.perf_counter()
        await self.handle.signal(PeerConversation.user_message, text)
        pieces: list[str] = []
        first = last = 0.0
        while True:
            at, item = await self._next()
            if item.topic == TOPIC_DELTA:
                pieces.append(self.converter.from_payload(item.data.payload, TextDelta).text)
                last = at - start
                first = first or last
            elif item.topic == TOPIC_COMPLETE:
                complete = self.converter.from_payload(item.data.payload, TextComplete)
                if complete.full_text != "".join(pieces):
                    raise RuntimeError(
                        f"Workflow Streams: deltas {''.join(pieces)!r} differ from the "
                        f"activity's reply {complete.full_text!r}"
                    )
                return Turn(first, at - start, len(pieces), complete.full_text, last)

    async def close(self) -> None:
        try:
            await self.handle.signal(PeerConversation.close)
            await asyncio.wait_for(self.handle.result(), 30)
        except Exception:
            with contextlib.suppress(Exception):
                await self.handle.terminate("benchmark over")
        self.consumer.cancel()
        with contextlib.suppress(BaseException):
            await self.consumer


async def connect(address: str, timeout: float = 60.0) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


# --- DBOS ----------------------------------------------------------------------------------------

DBOS_STREAM_KEY = "tokens"
DBOS_POLLING_INTERVAL = 0.01


Wrapped = TypeVar("Wrapped", bound=Callable[..., Any])


def typed(decorator: Any) -> Callable[[Wrapped], Wrapped]:
    return cast(Callable[[Wrapped], Wrapped], decorator)


class DbosApp:
    """A DBOS application on SQLite: one workflow per turn, as in DBOS's streaming guide, whose
    input is the whole conversation; the app keeps the conversation between turns."""

    def __init__(self, database: Path, llm_url: str) -> None:
        # Imported by name: DBOS is only installed for this benchmark (the `bench` extra), and
        # its decorators are typed as the functions they wrap.
        DBOS: Any = importlib.import_module("dbos").DBOS
        self.dbos = DBOS
        llm = llm_client(llm_url)

        @typed(DBOS.step())
        async def stream_completion(model_name: str, messages: Messages) -> str:
            pieces: list[str] = []
            async for token in stream_direct(llm, model_name, messages):
                await DBOS.write_stream_async(DBOS_STREAM_KEY, token)
                pieces.append(token)
            return "".join(pieces)

        @typed(DBOS.workflow())
        async def chat_turn(model_name: str, messages: Messages) -> str:
            reply = await stream_completion(model_name, messages)
            await DBOS.close_stream_async(DBOS_STREAM_KEY)
            return reply

        self.chat_turn = chat_turn
        config: dict[str, str] = {
            "name": "engram-bench-peers",
            "system_database_url": f"sqlite:///{database}",
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()

    def conversation(self, model_name: str) -> DbosConversation:
        return DbosConversation(self, model_name)

    def destroy(self) -> None:
        self.dbos.destroy(destroy_registry=True)


class DbosConversation:
    def __init__(self, app: DbosApp, model_name: str) -> None:
        self.app = app
        self.model_name = model_name
        self.messages: Messages = [{"role": "system", "content": SYSTEM_PROMPT}]

    async def turn(self, text: str) -> Turn:
        dbos = self.app.dbos
        messages = [*self.messages, {"role": "user", "content": text}]
        start = time.perf_counter()
        handle = await dbos.start_workflow_async(self.app.chat_turn, self.model_name, messages)
        pieces: list[str] = []
        first = last = 0.0
        async for token in dbos.read_stream_async(
            handle.workflow_id, DBOS_STREAM_KEY, polling_interval_sec=DBOS_POLLING_INTERVAL
        ):
            pieces.append(str(token))
            last = time.perf_counter() - start
            first = first or last
        total = time.perf_counter() - start
        reply = await handle.get_result()
        if reply != "".join(pieces):
            raise RuntimeError(
                f"DBOS: streamed {''.join(pieces)!r} differs from the workflow's reply {reply!r}"
            )
        self.messages = [*messages, {"role": "assistant", "content": reply}]
        return Turn(first, total, len(pieces), reply, last)


# --- LangGraph ------------------------------------------------------------------------------------


class ConversationState(TypedDict):
    model: str
    # Plain OpenAI messages, appended: what the LLM is sent, with no conversion on the way.
    messages: Annotated[Messages, operator.add]


StreamWriter = Callable[[Any], None]


class LangGraphApp:
    """LangGraph used as a library, as its persistence guide shows: a one-node graph whose state is
    the conversation, compiled with AsyncSqliteSaver; each turn is one `astream` on the
    conversation's thread with durability "sync" (the checkpoint is written before the next step
    starts and before the run returns) and stream_mode "custom" for the node's tokens."""

    def __init__(self, database: Path, llm_url: str) -> None:
        # Imported by name: LangGraph is only installed for this benchmark (the `bench` extra).
        graph_module: Any = importlib.import_module("langgraph.graph")
        sqlite_module: Any = importlib.import_module("langgraph.checkpoint.sqlite.aio")
        self.database = database
        self.saver_class = sqlite_module.AsyncSqliteSaver
        self.saver_context: Any = None
        llm = llm_client(llm_url)

        async def call_model(state: ConversationState, writer: StreamWriter) -> dict[str, Any]:
            pieces: list[str] = []
            async for token in stream_direct(llm, state["model"], state["messages"]):
                writer(token)
                pieces.append(token)
            return {"messages": [{"role": "assistant", "content": "".join(pieces)}]}

        builder = graph_module.StateGraph(ConversationState)
        builder.add_node("call_model", call_model)
        builder.add_edge(graph_module.START, "call_model")
        builder.add_edge("call_model", graph_module.END)
        self.builder = builder
        self.graph: Any = None

    async def open(self) -> None:
        self.saver_context = self.saver_class.from_conn_string(str(self.database))
        saver = await self.saver_context.__aenter__()
        self.graph = self.builder.compile(checkpointer=saver)

    async def close(self) -> None:
        if self.saver_context is not None:
            await self.saver_context.__aexit__(None, None, None)

    def conversation(self, model_name: str) -> LangGraphConversation:
        return LangGraphConversation(self, model_name)


class LangGraphConversation:
    def __init__(self, app: LangGraphApp, model_name: str) -> None:
        self.app = app
        self.model_name = model_name
        self.config = {"configurable": {"thread_id": f"conversation-{uuid.uuid4().hex[:12]}"}}
        self.started = False

    async def turn(self, text: str) -> Turn:
        update: dict[str, Any] = {"messages": [{"role": "user", "content": text}]}
        if not self.started:
            update = {
                "model": self.model_name,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT}, *update["messages"]],
            }
        start = time.perf_counter()
        pieces: list[str] = []
        first = last = 0.0
        async for token in self.app.graph.astream(
            update, self.config, stream_mode="custom", durability="sync"
        ):
            pieces.append(str(token))
            last = time.perf_counter() - start
            first = first or last
        total = time.perf_counter() - start
        self.started = True
        state = await self.app.graph.aget_state(self.config)
        reply = state.values["messages"][-1]["content"]
        if reply != "".join(pieces):
            raise RuntimeError(
                f"LangGraph: streamed {''.join(pieces)!r} differs from the checkpoint's {reply!r}"
            )
        return Turn(first, total, len(pieces), reply, last)


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Paired:
    system: list[Turn]
    direct: list[Turn]
    # (user message, the baseline's reply) for every turn, warm-ups included.
    exchanges: list[tuple[str, str]]


@dataclass
class Plan:
    turns: int  # measured per row
    pause: float  # seconds idle before each turn


async def paired(bench: Bench, model_name: str, system_turn: SystemTurn, plan: Plan) -> Paired:
    """`plan.turns` turns of the system, each paired with the baseline's, after WARMUP_TURNS; each
    after `plan.pause` seconds idle, as a user's next message never follows the reply at once."""
    history: Messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    result = Paired([], [], [])

    async def direct(text: str) -> Turn:
        await asyncio.sleep(plan.pause)
        first, total, chunks = await bench.direct_turn(model_name, history, text)
        return Turn(first, total, chunks, history[-1]["content"], total)

    async def system(text: str) -> Turn:
        await asyncio.sleep(plan.pause)
        return await asyncio.wait_for(system_turn(text), TURN_TIMEOUT)

    for i in range(WARMUP_TURNS + plan.turns):
        text = f"turn {i}: tell me more"
        # Alternate which goes first, so neither always meets a warmer machine.
        if i % 2:
            theirs = await system(text)
            ours = await direct(text)
        else:
            ours = await direct(text)
            theirs = await system(text)
        if not ours.text or ours.chunks < 1:
            raise RuntimeError(f"the LLM sent no reply to {text!r}")
        if theirs.chunks < 1:
            raise RuntimeError(f"no text streamed for {text!r}")
        if theirs.text is not None and theirs.text != ours.text:
            raise RuntimeError(
                f"turn {i}: the reply {theirs.text!r} differs from the LLM's {ours.text!r}"
            )
        result.exchanges.append((text, ours.text))
        if i >= WARMUP_TURNS:
            result.system.append(theirs)
            result.direct.append(ours)
    return result


def row(measured: Paired) -> dict[str, Any]:
    system, direct = measured.system, measured.direct
    pairs = list(zip(system, direct, strict=True))
    report: dict[str, Any] = {
        "turns": len(pairs),
        "ttft_overhead_ms": summary([s.ttft - d.ttft for s, d in pairs]),
        "turn_overhead_ms": summary([s.total - d.total for s, d in pairs]),
        "system_ttft_ms": summary([s.ttft for s in system]),
        "system_turn_ms": summary([s.total for s in system]),
        "direct_ttft_ms": summary([d.ttft for d in direct]),
        "direct_turn_ms": summary([d.total for d in direct]),
        "system_chunks_per_reply_p50": statistics.median(s.chunks for s in system),
        "llm_tokens_per_reply_p50": statistics.median(d.chunks for d in direct),
        # Per turn, in order: (system TTFT, system turn, direct TTFT, direct turn), ms.
        "samples_ms": [
            [round(v * 1000, 2) for v in (s.ttft, s.total, d.ttft, d.total)] for s, d in pairs
        ],
    }
    if len(pairs) >= 40:
        # The conversation grows by two messages a turn: see whether the overhead grows with it.
        early, late = pairs[:20], pairs[-20:]
        report["overhead_p50_ms_first_20_turns"] = {
            "ttft": round(statistics.median(s.ttft - d.ttft for s, d in early) * 1000, 2),
            "turn": round(statistics.median(s.total - d.total for s, d in early) * 1000, 2),
        }
        report["overhead_p50_ms_last_20_turns"] = {
            "ttft": round(statistics.median(s.ttft - d.ttft for s, d in late) * 1000, 2),
            "turn": round(statistics.median(s.total - d.total for s, d in late) * 1000, 2),
        }
    if all(s.last_token is not None for s in system):
        report["system_last_token_ms"] = summary([cast(float, s.last_token) for s in system])
        report["last_token_overhead_ms"] = summary(
            [cast(float, s.last_token) - d.total for s, d in pairs]
        )
    return report


async def check_engram_history(
    bench: Bench, agent_id: str, exchanges: list[tuple[str, str]]
) -> None:
    """Every turn's durable reply is the LLM's reply (the baseline's, to the same message)."""
    deadline = time.monotonic() + 30
    while True:
        history = await bench.stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id))
        replies = {t.user: (t.reply, t.outcome) for t in history.turns}
        if all(user in replies for user, _ in exchanges) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    for user, expected in exchanges:
        reply, outcome = replies.get(user, ("", "missing"))
        if reply != expected:
            raise RuntimeError(
                f"Engram's reply to {user!r} ({outcome}) is {reply!r}, the LLM's {expected!r}"
            )


async def measure_engram(bench: Bench, engine: Engine, plan: Plan) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    await asyncio.to_thread(engine.start)
    try:
        for setting, model_name in SETTINGS.items():
            agent_id = await bench.create(model_name)

            async def engram(text: str, agent_id: str = agent_id) -> Turn:
                first, total, chunks = await bench.engram_turn(agent_id, text)
                return Turn(first, total, chunks)

            measured = await paired(bench, model_name, engram, plan)
            await check_engram_history(bench, agent_id, measured.exchanges)
            rows[setting] = row(measured)
            print(f"engram {setting}: {rows[setting]}", flush=True)
    finally:
        if engine.process is not None and engine.process.poll() is None:
            await asyncio.to_thread(engine.stop)
    return rows


async def measure_temporal(bench: Bench, data: Path, llm_url: str, plan: Plan) -> dict[str, Any]:
    port, ui_port = free_port(), free_port()
    server = start_dev_server(data / "temporal-peer", port, ui_port)
    try:
        await wait_for_port("127.0.0.1", port, server, timeout=60)
        client = await connect(f"127.0.0.1:{port}")
        activities = StreamingActivities(llm_url)
        worker = Worker(
            client,
            task_queue=TEMPORAL_TASK_QUEUE,
            workflows=[PeerConversation],
            activities=[activities.stream_completion],
            # As Engram's worker: the benchmark's own modules are not re-imported per workflow.
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules(
                    "bench", "engram", "tests"
                )
            ),
        )
        rows: dict[str, Any] = {}
        async with worker:
            for setting, model_name in SETTINGS.items():
                handle = await client.start_workflow(
                    PeerConversation.run,
                    ConversationInput(model=model_name, system=SYSTEM_PROMPT),
                    id=f"peer-conversation-{uuid.uuid4().hex[:12]}",
                    task_queue=TEMPORAL_TASK_QUEUE,
                )
                conversation = TemporalConversation(client, handle)
                try:
                    measured = await paired(bench, model_name, conversation.turn, plan)
                finally:
                    await conversation.close()
                rows[setting] = row(measured)
                print(f"temporal {setting}: {rows[setting]}", flush=True)
        return rows
    finally:
        server.terminate()
        try:
            await asyncio.to_thread(server.wait, 15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def measure_in_process(
    name: str, bench: Bench, plan: Plan, conversation: Callable[[str], SystemTurn]
) -> dict[str, Any]:
    """A row per setting for a system running in the bench's process, one conversation each."""
    rows: dict[str, Any] = {}
    for setting, model_name in SETTINGS.items():
        turn = conversation(model_name)
        rows[setting] = row(await paired(bench, model_name, turn, plan))
        print(f"{name} {setting}: {rows[setting]}", flush=True)
    return rows


async def measure_dbos(bench: Bench, data: Path, llm_url: str, plan: Plan) -> dict[str, Any]:
    app = DbosApp(data / "dbos.sqlite", llm_url)
    try:
        return await measure_in_process("dbos", bench, plan, lambda m: app.conversation(m).turn)
    finally:
        app.destroy()
        # DBOS made its own thread pool the loop's default executor, and destroy() shut it down:
        # give the rows after it (asyncio.to_thread, aiosqlite) a working one again.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())


async def measure_langgraph(bench: Bench, data: Path, llm_url: str, plan: Plan) -> dict[str, Any]:
    app = LangGraphApp(data / "langgraph.sqlite", llm_url)
    await app.open()
    try:
        return await measure_in_process(
            "langgraph", bench, plan, lambda m: app.conversation(m).turn
        )
    finally:
        await app.close()


def bench_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed (pip install -e '.[bench]')"


def describe() -> dict[str, str]:
    return {
        "engram": "engram dev (gateway, worker and embedded Temporal on SQLite) in its own "
        "process group; the client is Bench.engram_turn (gateway Chat stream). Replies are "
        "checked against GetHistory (the durable reply); the streamed text itself is not "
        "returned by Bench.engram_turn.",
        "temporal_workflow_streams": "temporalio "
        + _version("temporalio")
        + " contrib.workflow_streams against its own `temporal server start-dev` (SQLite, the "
        "same flags as Engram's embedded server, eager workflow start and eager activities on); "
        "worker in the benchmark's process (sandboxed runner, benchmark modules passed "
        "through). One workflow per conversation holds it; the user message is a signal; an "
        "activity streams the LLM and publishes each token on topic 'delta' "
        "(WorkflowStreamClient.from_within_activity, batch_interval 200 ms, force_flush on the "
        "first delta only, as the Workflow Streams guide's LLM example) and the whole reply on "
        "'complete'; the activity awaits stream_client.flush() before leaving `async with` "
        "(without it the forced flush's in-flight signal makes the exit's cancel of the flusher "
        "get lost and the activity hangs: temporalio 1.35.0 on Python 3.11; the samples-python "
        "chat sample drops force_flush for that bug). The client holds one "
        "subscription for the whole conversation (default poll_cooldown 100 ms) read by a "
        "background task. Turn ends at the 'complete' item.",
        "dbos": "dbos "
        + bench_version("dbos")
        + " on SQLite (temp file), in the benchmark's process. One workflow per turn (as DBOS's "
        "streaming guide), given the whole conversation; an async step calls the LLM and writes "
        "every token with DBOS.write_stream_async (one SQLite transaction per token, no "
        "batching); the workflow then closes the stream. The client starts the workflow with "
        f"DBOS.start_workflow_async and reads DBOS.read_stream_async, polling every "
        f"{DBOS_POLLING_INTERVAL * 1000:.0f} ms (SQLite has no LISTEN/NOTIFY). Turn ends when "
        "the stream is closed.",
        "langgraph": "langgraph "
        + bench_version("langgraph")
        + " with langgraph-checkpoint-sqlite "
        + bench_version("langgraph-checkpoint-sqlite")
        + " (AsyncSqliteSaver on a temp file), as a library in the benchmark's process: a "
        "one-node StateGraph per conversation (thread) whose state is the OpenAI messages "
        "(appended with operator.add); each turn is graph.astream(user message, "
        "stream_mode='custom', durability='sync'), the node streaming the LLM and handing each "
        "token to the injected StreamWriter. The checkpoint of the turn's input is written "
        "before the node runs and the reply's before astream ends. Turn ends when astream ends; "
        "the reply is checked against the saved state.",
        "direct": "Bench.direct_turn: the openai AsyncOpenAI client, one client for the run, "
        "streaming the same conversation to the same fake LLM the way Engram's activity does "
        "(bench.run.stream_direct: the body posted as built, chunks read as JSON), as do the "
        "Temporal activity and the DBOS step, so no row is flattered by "
        "chat.completions.create's per-message walk (about 0.1 ms a message) that grows with "
        "the conversation.",
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


async def run(llm_url: str, plan: Plan, systems: list[str]) -> dict[str, Any]:
    # Cleanup (finally blocks) also runs on SIGTERM: the main task is cancelled.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        data = Path(tmp)
        # The engine is started only for Engram's rows; the bench's baseline client is shared.
        engine = Engine(data / "engram", llm_url)
        bench = Bench(engine, llm_url)
        measures: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "engram": lambda: measure_engram(bench, engine, plan),
            "temporal_workflow_streams": lambda: measure_temporal(bench, data, llm_url, plan),
            "dbos": lambda: measure_dbos(bench, data, llm_url, plan),
            "langgraph": lambda: measure_langgraph(bench, data, llm_url, plan),
        }
        try:
            for name in systems:
                try:
                    results[name] = await measures[name]()
                except (Exception, SystemExit) as err:
                    reason = f"{type(err).__name__}: {err}"
                    print(f"{name} failed: {reason}", file=sys.stderr, flush=True)
                    results[name] = {"error": reason}
        finally:
            await bench.channel.close(None)
    return results


def ms(value: float) -> str:
    return f"{value:.1f}"


def by_part(r: dict[str, Any]) -> str:
    if "overhead_p50_ms_first_20_turns" not in r:
        return "—"
    first = r["overhead_p50_ms_first_20_turns"]["ttft"]
    last = r["overhead_p50_ms_last_20_turns"]["ttft"]
    return f"{ms(first)} / {ms(last)}"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| system | LLM tokens | turns | TTFT overhead p50 / p99 (ms) | turn overhead p50 / p99 "
        "(ms) | system TTFT p50 (ms) | system turn p50 (ms) | direct TTFT / turn p50 (ms) "
        "| TTFT overhead p50, first / last 20 turns (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for system, rows in results.items():
        if "error" in rows:
            lines.append(f"| {system} | — | — | failed: {rows['error']} | | | | | |")
            continue
        for setting, r in rows.items():
            lines.append(
                f"| {system} | {setting} | {r['turns']} "
                f"| {ms(r['ttft_overhead_ms']['p50'])} / {ms(r['ttft_overhead_ms']['p99'])} "
                f"| {ms(r['turn_overhead_ms']['p50'])} / {ms(r['turn_overhead_ms']['p99'])} "
                f"| {ms(r['system_ttft_ms']['p50'])} | {ms(r['system_turn_ms']['p50'])} "
                f"| {ms(r['direct_ttft_ms']['p50'])} / {ms(r['direct_turn_ms']['p50'])} "
                f"| {by_part(r)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--turns", type=int, help="measured turns per row (default 100)")
    parser.add_argument("--quick", action="store_true", help="20 turns per row")
    parser.add_argument(
        "--pause-ms",
        type=float,
        default=200.0,
        help="idle time before each turn, the system's and the baseline's (default 200)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SYSTEMS,
        help="run only this system (repeatable)",
    )
    parser.add_argument(
        "--output", type=Path, help="results file (default: bench/results/peers-DATE.json)"
    )
    args = parser.parse_args()
    turns = args.turns or (20 if args.quick else 100)
    systems = args.only or SYSTEMS

    load_before = os.getloadavg()
    llm_port = free_port()
    llm = start_fake_llm(llm_port)
    try:
        asyncio.run(wait_for_port("127.0.0.1", llm_port, llm, 30, "the fake LLM"))
        plan = Plan(turns, args.pause_ms / 1000)
        results = asyncio.run(run(f"http://127.0.0.1:{llm_port}/v1", plan, systems))
    finally:
        llm.terminate()
        try:
            llm.wait(10)
        except subprocess.TimeoutExpired:
            llm.kill()
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            **machine(),
            # Anything else busy on the machine during the run shows here.
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
            "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        },
        "conditions": "one fake OpenAI-compatible LLM (tests/fake_llm.py) in its own process; "
        "client, systems and LLM share the machine, on loopback. Overheads are per turn, system "
        "minus the direct openai-client baseline measured interleaved in the same run (order "
        f"alternating); {WARMUP_TURNS} warm-up turns per row not counted. One growing "
        "conversation per row, sent whole to the LLM every turn. Each turn (the system's and the "
        f"baseline's) starts after {args.pause_ms:.0f} ms idle, as a user's next message never "
        "follows a reply at once (and a Workflow Streams subscriber's poll cooldown from the "
        "previous reply has then passed).",
        "models": SETTINGS,
        "turns": turns,
        "pause_ms": args.pause_ms,
        "setups": describe(),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick and not args.turns else ""
    output = args.output or RESULTS / f"peers-{datetime.date.today()}{suffix}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"wrote {output}")


if __name__ == "__main__":
    # Run from the module imported by name, not from __main__: the Temporal worker's sandbox
    # imports the workflow's module by name, and would otherwise run this script again.
    from bench import peers

    peers.main()

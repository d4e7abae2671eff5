"""A tool call never lands on a worker that lacks the tool: a worker whose tools differ from those
of the running workers refuses to start (engram.tools.tool_set), and a call that reaches a worker
without its tool anyway fails at once, naming the tool and the worker, while the turn goes on.

On a real Temporal dev server: workers as the engine builds them, the agent's real workflow (the
in-process harness) and, last, `engram dev` with a second `engram worker` process.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from engram import TASK_QUEUE
from engram.activities.tool_calls import ToolActivities
from engram.llm_settings import LLMEndpoint
from engram.tools import ToolRegistry, tool
from engram.tools.mcp_tools import McpServers, parse_mcp_servers
from engram.tools.tool_set import DifferentTools
from engram.transcripts import TranscriptStore, open_transcript_store
from engram.vocabulary import TOOL_ERROR, EventKind, ToolKind, TurnOutcome
from engram.worker import build_worker, join_workers, load_tools
from engram.workflows.types import AgentTool, LLMRequest, LLMResult, ToolCall, TurnResult
from tests.engine import Engine
from tests.workflow_harness import Harness, local_environment

TOOLS = "tests.tool_module"


# How long the tests let a stopped worker count as running (a minute and more in production).
WINDOW = timedelta(seconds=2)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    # Its own server (so these tests are e2e): the check looks at every poller of Engram's queue.
    async with local_environment() as environment:
        yield environment


@pytest.fixture
def store(tmp_path: Path) -> TranscriptStore:
    return open_transcript_store(tmp_path / "transcripts.db")


def running(env: WorkflowEnvironment, tools: ToolActivities, store: TranscriptStore) -> Worker:
    return build_worker(env.client, LLMEndpoint(base_url="http://127.0.0.1:9/v1"), store, tools)


@tool
def add(a: int, b: int, c: int = 0) -> int:
    """Add three numbers (another version of tests.tool_module's `add`)."""
    return a + b + c


@pytest.mark.e2e
async def test_a_worker_with_other_tools_is_refused_while_others_run(
    env: WorkflowEnvironment, store: TranscriptStore
) -> None:
    first = load_tools(TOOLS, [])
    await join_workers(env.client, first, store)
    async with running(env, first, store):
        # Another worker with the same tools joins, and may share the calls.
        await join_workers(env.client, load_tools(TOOLS, []), store)

        with pytest.raises(DifferentTools) as refused:
            await join_workers(env.client, load_tools("engram.tools.builtin", []), store)
        message = str(refused.value)
        assert first.identity in message
        assert "published before but not here: add" in message
        assert "stop every worker first" in message

        # The same names, but one tool in another version: refused, and named.
        others = load_tools(TOOLS, []).registry
        changed = ToolActivities(
            ToolRegistry([add, *(t for n in others.names() if n != "add" and (t := others.get(n)))])
        )
        with pytest.raises(DifferentTools, match=r"another version here \(schema or policy\): add"):
            await join_workers(env.client, changed, store)

        # An MCP server more is another tool set too, even while it cannot be listed.
        down = parse_mcp_servers([f"down=http://127.0.0.1:{_free_port()}/mcp"])
        with_mcp = ToolActivities(load_tools(TOOLS, []).registry, McpServers(down))
        assert with_mcp.tool_set != first.tool_set
        with pytest.raises(DifferentTools):
            await join_workers(env.client, with_mcp, store)
    # The refused workers published nothing: the catalog is still the first worker's.
    assert {t.name for t in store.tools()} == {t.name for t in first.registry.describe()}


@pytest.mark.e2e
async def test_stopped_workers_do_not_count(
    env: WorkflowEnvironment, store: TranscriptStore
) -> None:
    old = load_tools(TOOLS, [])
    async with running(env, old, store):
        await asyncio.sleep(0.5)
    new = load_tools("engram.tools.builtin", [])
    # Temporal still lists the stopped worker; once its last poll is older than the window, it
    # no longer counts.
    await asyncio.sleep(WINDOW.total_seconds() + 0.2)
    await join_workers(env.client, new, store, alive_window=WINDOW)

    # A worker of this host whose process has ended (one restarted with new tools) does not count
    # however recently it polled; one of another host does until the window has passed.
    for identity, refused in (
        (f"{_ended_pid()}@{socket.gethostname()} tools:0123456789ab", False),
        ("7@another-host tools:0123456789ab", True),
    ):
        async with Worker(
            env.client, task_queue=TASK_QUEUE, activities=[old.list_tools], identity=identity
        ):
            await asyncio.sleep(0.3)
            if refused:
                with pytest.raises(DifferentTools, match="7@another-host"):
                    await join_workers(env.client, new, store, alive_window=WINDOW)
            else:
                await join_workers(env.client, new, store, alive_window=WINDOW)
        await asyncio.sleep(WINDOW.total_seconds() + 0.2)
        await join_workers(env.client, new, store, alive_window=WINDOW)


async def test_a_call_to_a_worker_without_the_tool_fails_and_the_turn_goes_on(
    harness: Harness,
) -> None:
    def reply(request: LLMRequest) -> str | LLMResult:
        if request.tool_rounds:
            return f"Done: {request.tool_rounds[-1].results[-1]}"
        if request.messages[-1].content == "look it up":
            call = ToolCall(call_id="call_0", name="lookup", arguments='{"key": "k"}')
            return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=[], tool_calls=[call])
        return "Sure."

    harness.fake.reply = reply
    # Given when some worker offered `lookup`; the harness's worker does not run it.
    lookup = AgentTool(name="lookup", kind=ToolKind.WORKER, retries=3)
    agent = await harness.create_agent(tools=[lookup])
    result = await agent.ask("look it up")
    results = [e for e in result.events if e.kind == EventKind.TOOL_RESULT]
    assert len(results) == 1 and results[0].code == TOOL_ERROR
    text = results[0].text
    assert "unknown tool 'lookup' on worker" in text and harness.tools.identity in text
    assert "Every worker must run the same tools" in text
    # Not retried, although the tool allows 3 retries: another attempt could land here again.
    started = [
        event
        async for event in agent.handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and event.activity_task_started_event_attributes.attempt > 1
    ]
    assert started == []
    assert finals(result) == [f"Done: {text}"]
    # The agent goes on.
    assert finals(await agent.ask("hello")) == ["Sure."]


@pytest.mark.e2e
def test_engram_worker_with_other_tools_exits_saying_why(tmp_path: Path) -> None:
    engine = Engine(
        tmp_path / "engine", "http://127.0.0.1:9/v1", extra_args=("--tools", TOOLS)
    ).start()
    try:
        worker = subprocess.run(
            [
                sys.executable,
                "-m",
                "engram.cli",
                "worker",
                "--temporal-address",
                f"127.0.0.1:{engine.temporal_port}",
                "--transcript-db",
                str(tmp_path / "engine" / "transcripts.db"),
                "--tools",
                "engram.tools.builtin",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "ENGRAM_LLM_BASE_URL": "http://127.0.0.1:9/v1"},
        )
    finally:
        assert engine.stop() == 0
    assert worker.returncode == 1, worker.stderr
    assert "engram worker: not starting: this worker's tools" in worker.stderr
    assert "published before but not here: add" in worker.stderr
    assert "Traceback" not in worker.stderr


def finals(result: TurnResult) -> list[str]:
    return [e.text for e in result.events if e.kind == EventKind.FINAL_ANSWER]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ended_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid

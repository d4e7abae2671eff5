"""What operators see: Prometheus metrics, one trace per turn, JSON log lines.

The engine test starts a real engine (`engram dev --metrics-port --log-format json
--otlp-endpoint`), has it serve a turn that calls a tool and a turn the LLM endpoint refuses, and
scrapes `/metrics` over HTTP as Prometheus would; the same engine's log lines must each be a JSON
object, and its spans reach an OTLP/gRPC endpoint the test serves. The tracing test runs a
gateway and a worker in this process against a real Temporal dev server, each on its own Temporal
client with the tracing interceptors, and reads the spans from an in-memory exporter.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from engram.dev_server import temporal_binary
from engram.gateway.agent_service import GatewaySettings
from engram.gateway.server import start_gateway
from engram.llm_settings import LLMEndpoint
from engram.observability import tracing
from engram.processes import free_port
from engram.temporal_connection import TemporalSettings
from engram.transcripts import open_transcript_store
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import MODEL_ATTRIBUTE, STATUS_ATTRIBUTE, TENANT_ATTRIBUTE
from engram.worker import build_worker, load_tools, publish_catalog
from tests.conftest import create_agent, text_of, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM, Script, ToolUse, tokens_of

# Words that must never reach a span: the user's input and the model's reply.
SECRET_INPUT = "the walrus sings at midnight"
SECRET_REPLY = "only the moon knows"


# --- metrics, JSON logs and OTLP export, on a real engine ------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample `/metrics` serves, keyed by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OpenTelemetry collector's OTLP/gRPC trace endpoint, keeping what it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, dict[str, str]]] = []  # (service, name, attributes)
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)  # type: ignore[no-untyped-call]
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get(
                "service.name", ""
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes = {
                        a.key: str(getattr(a.value, a.value.WhichOneof("value") or "string_value"))
                        for a in span.attributes
                    }
                    attributes["trace_id"] = span.trace_id.hex()
                    self.spans.append((service, span.name, attributes))
        return trace_service_pb2.ExportTraceServiceResponse()

    def named(self, name: str) -> list[dict[str, str]]:
        return [attributes for _, n, attributes in list(self.spans) if n == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.server.stop(None)


@pytest.fixture
def observed_engine(
    llm: FakeLLM, tmp_path: Path, collector: Collector
) -> Iterator[tuple[Engine, int]]:
    port = free_port()
    engine = Engine(
        tmp_path / "engine",
        llm.url,
        extra_args=(
            "--metrics-port",
            str(port),
            "--log-format",
            "json",
            "--otlp-endpoint",
            f"http://127.0.0.1:{collector.port}",
        ),
        ENGRAM_TOOLS="tests.tool_module",
        # Spans leave as they end, not in batches five seconds apart.
        OTEL_BSP_SCHEDULE_DELAY="100",
    ).start()
    try:
        yield engine, port
    finally:
        engine.stop()


def test_an_engine_counts_traces_and_logs_its_turns(
    observed_engine: tuple[Engine, int], llm: FakeLLM, collector: Collector
) -> None:
    engine, port = observed_engine
    stub = engine.stub()
    before = scrape(port)
    assert value(before, "engram_turns_started_total") == 0
    # The Temporal SDK's own metrics share the endpoint.
    assert any(name.startswith("temporal_") for name, _ in before)

    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="add")])
    llm.reply = Script(ToolUse([("add", '{"a": 2, "b": 3}')]), SECRET_REPLY)
    messages = list(stub.Chat(iter([user_message(agent_id, SECRET_INPUT)]), timeout=60))
    assert [m.final_answer.content for m in messages if m.HasField("final_answer")] == [
        SECRET_REPLY
    ]
    texts = sum(1 for m in messages if m.HasField("text"))

    after = scrape(port)
    assert value(after, "engram_turns_started_total") == 1
    assert value(after, "engram_turns_completed_total", outcome="completed") == 1
    assert value(after, "engram_time_to_first_token_seconds_count") == 1
    assert 0 < value(after, "engram_time_to_first_token_seconds_sum") < 30
    assert value(after, "engram_turn_duration_seconds_count", outcome="completed") == 1
    assert value(after, "engram_chat_streams_active") == 0
    # Two LLM calls (the tool call, then the answer); the fake endpoint reports one token per
    # text piece it streams (a fast model's pieces reach the client coalesced).
    reply = "".join(m.text.content for m in messages if m.HasField("text"))
    assert value(after, "engram_llm_tokens_total", direction="out") == len(tokens_of(reply))
    assert value(after, "engram_llm_tokens_total", direction="in") > 0
    assert value(after, "engram_tool_calls_total", tool="add", outcome="ok") == 1
    assert value(after, "engram_relay_lag_seconds_count") >= texts
    assert value(after, "engram_llm_errors_total", code="LLM_UNAUTHENTICATED") == 0
    # Both calls were sent while their workflow task was committed, and taken by their activity.
    assert value(after, "engram_llm_early_requests_total", outcome="claimed") == 2
    assert value(after, "engram_llm_early_requests_total", outcome="wasted") == 0

    # The endpoint now wants a key this engine does not send: 401.
    llm.api_key = "x"
    failed = list(stub.Chat(iter([user_message(agent_id, "Again?")]), timeout=60))
    assert [m.error.code for m in failed if m.HasField("error")] == ["LLM_UNAUTHENTICATED"]
    after = scrape(port)
    assert value(after, "engram_llm_errors_total", code="LLM_UNAUTHENTICATED") == 1
    # The endpoint refused the early request, and that refusal was the activity's: asked once.
    assert value(after, "engram_llm_early_requests_total", outcome="claimed") == 3
    assert value(after, "engram_turns_failed_total", code="LLM_UNAUTHENTICATED") == 1
    assert value(after, "engram_turns_started_total") == 2
    assert value(after, "engram_turn_duration_seconds_count", outcome="failed") == 1
    assert value(after, "engram_chat_streams_active") == 0

    # Every log line is one JSON object; the failed call's warning names its agent and turn.
    lines = [json.loads(line) for line in _log_lines(engine)]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    warnings = [line for line in lines if line.get("agent_id") == agent_id]
    assert any(
        line["level"] == "WARNING" and "401" in line["message"] and line.get("message_id")
        for line in warnings
    ), lines
    assert not any(SECRET_INPUT in json.dumps(line) for line in lines)

    # The Grafana dashboard charts only what the engine serves.
    dashboard = (Path(__file__).parent.parent / "deploy" / "grafana" / "engram.json").read_text()
    served = {name for name, _ in after}
    charted = set(re.findall(r"\b((?:engram|temporal)_[a-z_]+)", dashboard))
    # (Temporal's failure counters appear with the first failure.)
    assert charted and charted - served <= {"temporal_request_failure_total"}, charted - served

    # Traces went to the collector: each turn's gateway span and its LLM call in one trace, named
    # for `engram dev`, holding no words of the conversation.
    deadline = time.monotonic() + 10
    while len(turns := collector.named("engram.turn")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.stop() == 0
    assert [t[tracing.AGENT_ID] for t in turns] == [agent_id, agent_id], collector.spans
    llm_traces = {a["trace_id"] for a in collector.named("RunActivity:stream_chat")}
    assert {t["trace_id"] for t in turns} == llm_traces
    assert {service for service, _, _ in collector.spans} == {"engram-dev"}
    assert SECRET_INPUT not in repr(collector.spans) and SECRET_REPLY not in repr(collector.spans)


def _log_lines(engine: Engine) -> list[str]:
    # engram dev's banner goes to stdout, into the same file: everything else is a log line.
    banner = ("Engram is running", "  ", "Ctrl-C", "Engram stopped")
    return [line for line in engine.log().splitlines() if line and not line.startswith(banner)]


# --- one trace per turn, across gateway and worker ---------------------------------------------


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter, service="engram-test")
    yield exporter
    tracing.shutdown()


@pytest.fixture
async def traced_engine(
    spans: InMemorySpanExporter, llm: FakeLLM, tmp_path: Path
) -> AsyncIterator[agent_pb2_grpc.AgentServiceStub]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=[STATUS_ATTRIBUTE, TENANT_ATTRIBUTE, MODEL_ATTRIBUTE],
    )
    try:
        temporal = TemporalSettings(address=env.client.service_client.config.target_host)
        # The gateway and the worker each on a client of their own, as in separate processes.
        gateway_client = await temporal.connect(interceptors=tracing.client_interceptors())
        worker_client = await temporal.connect(interceptors=tracing.client_interceptors())
        store = open_transcript_store(tmp_path / "transcripts.db")
        tools = load_tools("tests.tool_module", [])
        await publish_catalog(tools, store)
        port = free_port()
        async with build_worker(worker_client, LLMEndpoint(llm.url), store, tools):
            server = await start_gateway(
                gateway_client,
                f"127.0.0.1:{port}",
                GatewaySettings(advertise_address=f"127.0.0.1:{port}"),
                store,
            )
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    yield agent_pb2_grpc.AgentServiceStub(channel)
            finally:
                await server.stop(None)
    finally:
        await env.shutdown()


async def test_each_turn_is_one_trace_from_gateway_to_llm_and_tools(
    traced_engine: agent_pb2_grpc.AgentServiceStub, spans: InMemorySpanExporter, llm: FakeLLM
) -> None:
    stub = traced_engine
    created = await stub.CreateAgent(
        agent_pb2.CreateAgentRequest(
            goal="Help.", model="fake-model", tools=[agent_pb2.Tool(name="add")]
        )
    )
    agent_id = created.agent_id
    llm.reply = Script(ToolUse([("add", '{"a": 2, "b": 3}')]), SECRET_REPLY)
    first = [m async for m in stub.Chat(_inputs(user_message(agent_id, SECRET_INPUT)))]
    second = [m async for m in stub.Chat(_inputs(user_message(agent_id, "And now?")))]
    assert SECRET_REPLY in text_of(first) and text_of(second)

    turns = await _wait_for(spans, "engram.turn", 2)
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans.get_finished_spans():
        assert span.context is not None
        by_trace.setdefault(span.context.trace_id, []).append(span)
    traces = []
    for turn in turns:
        assert turn.context is not None and turn.attributes is not None
        assert turn.attributes[tracing.AGENT_ID] == agent_id
        assert turn.attributes[tracing.OUTCOME] == "completed"
        traces.append({s.name: s for s in by_trace[turn.context.trace_id]})
    assert turns[0].context is not None and turns[1].context is not None
    assert turns[0].context.trace_id != turns[1].context.trace_id

    # The first turn: gateway → update → workflow → LLM activity, twice (the tool call, then the
    # answer), and the tool's own activity, all in the one trace.
    first_trace = traces[0]
    assert {
        "engram.turn",
        "StartWorkflowUpdate:chat",
        "StartActivity:stream_chat",
        "RunActivity:stream_chat",
        "StartActivity:tool:add",
        "RunActivity:tool:add",
    } <= first_trace.keys(), sorted(first_trace)
    llm_calls = sorted(
        (s for s in by_trace[turns[0].context.trace_id] if s.name == "RunActivity:stream_chat"),
        key=lambda s: s.start_time or 0,
    )
    assert len(llm_calls) == 2
    for call in llm_calls:
        assert call.attributes is not None
        assert call.attributes[tracing.AGENT_ID] == agent_id
        assert call.attributes[tracing.MODEL] == "fake-model"
        assert _count(call, tracing.INPUT_TOKENS) > 0
    # The fake endpoint counts the reply's text: none in the call that only calls the tool.
    assert [_count(c, tracing.OUTPUT_TOKENS) > 0 for c in llm_calls] == [False, True]
    assert "RunActivity:stream_chat" in traces[1]

    # Ids, the model and counts; never the conversation.
    for span in spans.get_finished_spans():
        shown = json.dumps(
            [
                span.name,
                dict(span.attributes or {}),
                [dict(e.attributes or {}) for e in span.events],
            ],
            default=str,
        )
        assert SECRET_INPUT not in shown and SECRET_REPLY not in shown, shown


def _count(span: ReadableSpan, attribute: str) -> int:
    return int(str((span.attributes or {})[attribute]))


async def _inputs(*messages: agent_pb2.ClientMessage) -> AsyncIterator[agent_pb2.ClientMessage]:
    for message in messages:
        yield message


async def _wait_for(
    exporter: InMemorySpanExporter, name: str, count: int, timeout: float = 10.0
) -> list[ReadableSpan]:
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in exporter.get_finished_spans() if s.name == name]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, [s.name for s in exporter.get_finished_spans()]
            return sorted(found, key=lambda s: s.start_time or 0)
        await asyncio.sleep(0.05)

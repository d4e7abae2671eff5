"""OpenTelemetry traces: one trace per turn, from the gateway's Chat call through the agent's
workflow to the LLM activity and the tools it calls. Off unless an OTLP endpoint is configured.

Temporal's `TracingInterceptor` carries span contexts in headers: client calls (the gateway's
`chat` update) to workflow handlers, and workflows to the activities they start. On its own it
would hang every activity of an agent under the trace that created the agent, since an agent's
workflow lives for months and starts its activities from its main loop, not from the update that
brought the turn. `TurnTracing` puts each turn back in its own trace: it remembers the span context
each turn's update arrived with (keyed by the turn's message id) and makes it the parent of the
activities the workflow starts for that turn. It only changes headers and spans, never commands,
so workflow replay is unaffected.

Spans carry ids, the model and token counts, never a prompt, a reply or a tool's input or output.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import opentelemetry.context
import temporalio.client
import temporalio.worker
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from temporalio.api.common.v1 import Payload
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import PayloadConverter

TRACER_NAME = "engram"
# TracingInterceptor's header (its default): where a span context rides on a Temporal call.
HEADER_KEY = "_tracer-data"
# Span contexts of recent turns a workflow remembers (queued turns wait here for their turn).
TURNS_REMEMBERED = 64

# Attribute names: OpenTelemetry's GenAI conventions where they exist, Engram's own otherwise.
AGENT_ID = "engram.agent_id"
MESSAGE_ID = "engram.message_id"
OUTCOME = "engram.outcome"
ERROR_CODE = "engram.error_code"
MODEL = "gen_ai.request.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"

# Seconds an export may take, unless OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT says otherwise.
EXPORT_TIMEOUT = 3.0
_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")

_provider: TracerProvider | None = None


def configure(
    endpoint: str = "", *, service: str = "engram", exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Export spans to the OTLP/gRPC collector at `endpoint` (or to `exporter`, at once); with
    neither, tracing stays off. `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are honoured."""
    global _provider
    if not endpoint and exporter is None:
        return None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        # Imported here: the exporter pulls in its own gRPC stubs, needed only when exporting.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # A collector that is down must not hold up a worker's or gateway's exit for long.
        configured = any(os.environ.get(v) for v in _TIMEOUT_VARIABLES)
        otlp = OTLPSpanExporter(endpoint=endpoint, timeout=None if configured else EXPORT_TIMEOUT)
        provider.add_span_processor(BatchSpanProcessor(otlp))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def enabled() -> bool:
    return _provider is not None


def shutdown() -> None:
    """Flush what is still buffered (on the way out); clients made after this are not traced."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def client_interceptors() -> list[temporalio.client.Interceptor]:
    """For `Client.connect`: none with tracing off. Workers built on the client use them too."""
    if not enabled():
        return []
    tracing = TracingInterceptor(trace.get_tracer(TRACER_NAME))
    # Order matters: TurnTracing's workflow side must see activity starts first (see module doc).
    return [tracing, TurnTracing(tracing)]


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def turn_span(agent_id: str, message_id: str) -> Span:
    """The root of a turn's trace, at the gateway; the caller ends it. A no-op span when off."""
    return tracer().start_span(
        "engram.turn",
        kind=SpanKind.SERVER,
        attributes={AGENT_ID: agent_id, MESSAGE_ID: message_id},
    )


def end_turn_span(span: Span, outcome: str, code: str = "") -> None:
    span.set_attribute(OUTCOME, outcome)
    if code:
        span.set_attribute(ERROR_CODE, code)
        span.set_status(Status(StatusCode.ERROR, code))
    span.end()


def annotate(**attributes: str | int | float) -> None:
    """Set attributes on the current span (the activity's, inside an activity)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({_ATTRIBUTE_NAMES.get(k, k): v for k, v in attributes.items()})


_ATTRIBUTE_NAMES = {
    "agent_id": AGENT_ID,
    "message_id": MESSAGE_ID,
    "model": MODEL,
    "input_tokens": INPUT_TOKENS,
    "output_tokens": OUTPUT_TOKENS,
    "error_code": ERROR_CODE,
    "cost_usd": "engram.llm.cost_usd",
}


def trace_id(span: Span | None = None) -> str:
    """The trace id of `span` (default: the current span) in hex, or "" when there is none."""
    context = (span or trace.get_current_span()).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


# --- the workflow side: each turn in its own trace ---------------------------------------------

_Carrier = dict[str, str]


class TurnTracing(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """Parents a turn's activities on the span context its update arrived with."""

    def __init__(self, tracing: TracingInterceptor) -> None:
        if tracing.header_key != HEADER_KEY:
            raise ValueError(f"TurnTracing reads {HEADER_KEY!r}, not {tracing.header_key!r}")

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        return _TurnInbound


class _TurnInbound(temporalio.worker.WorkflowInboundInterceptor):
    def __init__(self, next: temporalio.worker.WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self.turns: OrderedDict[str, _Carrier] = OrderedDict()
        # The turn whose LLM call came last: its tool calls and announcements follow it.
        self.current = ""

    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        super().init(_TurnOutbound(outbound, self))

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        turn = _turn_of(input.args)
        carrier = _carrier(input.headers)
        if turn and carrier and turn not in self.turns:
            self.turns[turn] = carrier
            while len(self.turns) > TURNS_REMEMBERED:
                self.turns.popitem(last=False)
        try:
            return await super().handle_update_handler(input)
        finally:
            # A chat update ends with its turn: later maintenance is the agent's, not the turn's.
            if turn and turn == self.current:
                self.current = ""

    def context_for(self, args: Sequence[Any]) -> opentelemetry.context.Context | None:
        turn = _turn_of(args)
        if turn and turn in self.turns:
            self.current = turn
        carrier = self.turns.get(self.current) if self.current else None
        return TraceContextTextMapPropagator().extract(carrier) if carrier else None


class _TurnOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def __init__(
        self, next: temporalio.worker.WorkflowOutboundInterceptor, root: _TurnInbound
    ) -> None:
        super().__init__(next)
        self.root = root

    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with _attached(self.root.context_for(input.args)):
            return super().start_activity(input)

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with _attached(self.root.context_for(input.args)):
            return super().start_local_activity(input)


def _turn_of(args: Sequence[Any]) -> str:
    """The turn an update or activity argument belongs to: a chat's or an LLM call's message id,
    a run's id."""
    if not args:
        return ""
    for name in ("message_id", "run_id"):
        value = getattr(args[0], name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _carrier(headers: Mapping[str, Payload]) -> _Carrier | None:
    payload = headers.get(HEADER_KEY)
    if payload is None:
        return None
    carrier = PayloadConverter.default.from_payloads([payload])[0]
    return carrier if isinstance(carrier, dict) and carrier else None


@contextmanager
def _attached(context: opentelemetry.context.Context | None) -> Iterator[None]:
    if context is None:
        yield
        return
    token = opentelemetry.context.attach(context)
    try:
        yield
    finally:
        opentelemetry.context.detach(token)

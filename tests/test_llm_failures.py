"""How LLM endpoint errors become retries or failed turns, without a Temporal server.

The openai client's real exceptions (built on real HTTP requests and responses) go through the
activity's classifier; Temporal's real failure converter carries the raised errors to the workflow
side, where they become the turn's result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import openai
import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.common import RetryPolicy
from temporalio.converter import DataConverter
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)
from temporalio.testing import ActivityEnvironment

from engram.activities.llm_errors import MAX_RETRY_AFTER, LLMFailure, classify, retry_after
from engram.activities.llm_stream import LLMActivities
from engram.llm_settings import LLMEndpoint
from engram.vocabulary import ErrorCode, EventKind, TurnOutcome
from engram.workflows.llm_outcome import (
    LLM_RETRY,
    UNREACHABLE_ATTEMPTS,
    UNREACHABLE_BUDGET,
    attempts_within,
    failed_result,
    pieces_detail,
    stream_pieces,
)
from engram.workflows.types import ChatMessage, LLMRequest, LLMResult, StreamPiece

URL = "http://llm.test:8080/v1"
PIECES = [
    StreamPiece(kind=EventKind.TEXT, text="Hel"),
    StreamPiece(kind=EventKind.RESTART, text=""),
    StreamPiece(kind=EventKind.STATUS, text="model x answers", code="model_substituted"),
    StreamPiece(kind=EventKind.TEXT, text="Hello"),
]


def request() -> httpx2.Request:
    return httpx2.Request("POST", f"{URL}/chat/completions")


def status_error(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    """What the openai client raises for an HTTP error answer: its own subclass per status,
    with the body already unwrapped to the inner error, as the activity sees it."""
    response = httpx2.Response(status, headers=headers, json=body, request=request())
    client = openai.OpenAI(base_url=URL, api_key="unused")
    return client._make_status_error_from_response(response)


def refused() -> openai.APIConnectionError:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as err:
            raise httpx2.ConnectError("All connection attempts failed") from err
    except httpx2.ConnectError as err:
        try:
            raise openai.APIConnectionError(request=request()) from err
        except openai.APIConnectionError as raised:
            return raised


def round_trip(err: BaseException) -> BaseException:
    """`err` as the workflow receives it: through Temporal's failure converter and back."""
    converter = DataConverter.default
    failure = Failure()
    converter.failure_converter.to_failure(err, converter.payload_converter, failure)
    return converter.failure_converter.from_failure(failure, converter.payload_converter)


def activity_error(cause: BaseException | None) -> ActivityError:
    err = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="stream_chat",
        activity_id="1",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    err.__cause__ = cause
    return err


# --- the classifier -------------------------------------------------------------------------


def test_timeout_is_retried() -> None:
    failure = classify(openai.APITimeoutError(request()), URL, attempt=5)
    assert failure == LLMFailure(
        code="LLM_TIMEOUT", message=f"LLM endpoint {URL} timed out", retryable=True
    )


def test_refused_connection_is_retried_until_the_budget() -> None:
    for attempt in range(1, UNREACHABLE_ATTEMPTS):
        failure = classify(refused(), URL, attempt)
        assert failure.retryable, attempt
        assert (failure.code, failure.message) == (
            "LLM_UNREACHABLE",
            f"LLM endpoint {URL} is unreachable",
        )
    last = classify(refused(), URL, UNREACHABLE_ATTEMPTS)
    assert not last.retryable
    assert last.code == "LLM_UNREACHABLE"
    # The innermost cause says why, not the client's generic "Connection error.".
    assert last.message == f"LLM endpoint {URL} is unreachable ([Errno 111] Connection refused)"


def test_a_real_refused_connection_names_its_cause() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = f"http://127.0.0.1:{port}/v1"
    client = openai.AsyncOpenAI(base_url=dead, api_key="unused", max_retries=0, timeout=5)

    async def call() -> None:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )

    with pytest.raises(openai.APIConnectionError) as raised:
        asyncio.run(call())
    failure = classify(raised.value, dead, UNREACHABLE_ATTEMPTS)
    assert failure.code == "LLM_UNREACHABLE" and not failure.retryable
    assert failure.message.startswith(f"LLM endpoint {dead} is unreachable (")
    assert "Connection error." not in failure.message


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (401, "LLM_UNAUTHENTICATED", " (check ENGRAM_LLM_API_KEY)"),
        (403, "LLM_PERMISSION_DENIED", ""),
        (404, "LLM_NOT_FOUND", " (unknown model or wrong base URL)"),
        (400, "LLM_HTTP_400", ""),
        (422, "LLM_HTTP_422", ""),
    ],
)
def test_client_errors_end_the_turn(status: int, code: str, hint: str) -> None:
    err = status_error(status, {"error": {"message": "the model `llama-9000` does not exist"}})
    failure = classify(err, URL, attempt=1)
    assert failure == LLMFailure(
        code=code,
        message=f"LLM endpoint {URL} answered HTTP {status}: "
        f"the model `llama-9000` does not exist{hint}",
        retryable=False,
    )


def test_a_body_without_a_message_falls_back_to_the_clients() -> None:
    for err in (status_error(418, {"error": "short and stout"}), status_error(403)):
        assert err.message == f"Error code: {err.status_code}"
        assert classify(err, URL, 1).message == (
            f"LLM endpoint {URL} answered HTTP {err.status_code}: {err.message}"
        )


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_overload_and_server_errors_are_retried(status: int) -> None:
    failure = classify(status_error(status, {"error": {"message": "overloaded"}}), URL, 5)
    assert failure == LLMFailure(
        code=f"LLM_HTTP_{status}",
        message=f"LLM endpoint {URL} answered HTTP {status}: overloaded",
        retryable=True,
    )


def test_retry_after_in_seconds_sets_the_next_delay() -> None:
    err = status_error(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"})
    failure = classify(err, URL, 1)
    assert failure.retryable and failure.retry_after == 7.0
    raised = failure.retry_error(PIECES)
    assert raised.next_retry_delay == timedelta(seconds=7)
    assert raised.type == "LLM_HTTP_429" and not raised.non_retryable
    assert raised.message == f"LLM endpoint {URL} answered HTTP 429: slow down"
    assert stream_pieces(raised.details) == PIECES


def test_retry_after_as_a_date() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    failure = classify(status_error(503, headers={"Retry-After": soon}), URL, 1)
    assert failure.retry_after is not None
    # An HTTP date has whole seconds, and the clock moved on since it was written.
    assert 25 <= failure.retry_after <= 30


def test_retry_after_is_capped_and_ignored_when_meaningless() -> None:
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert retry_after({"retry-after": "3600"}, now) == MAX_RETRY_AFTER
    assert retry_after({"retry-after": "Sun, 01 Jun 2025 12:00:10 GMT"}, now) == 10
    assert retry_after({"retry-after": "Sun, 01 Jun 2025 13:00:00 GMT"}, now) == MAX_RETRY_AFTER
    assert retry_after({"retry-after": "Sun, 01 Jun 2025 11:59:00 GMT"}, now) is None
    for nonsense in ("soon", "", "0", "-5", "nan", "inf"):
        assert retry_after({"retry-after": nonsense}, now) is None, nonsense
    assert retry_after({}, now) is None
    # OpenAI's millisecond header is the more precise one.
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}, now) == 1.5
    assert retry_after({"retry-after-ms": "junk", "retry-after": "9"}, now) == 9


def test_retry_after_only_where_it_means_when_to_come_back() -> None:
    err = status_error(500, headers={"Retry-After": "5"})
    failure = classify(err, URL, 1)
    assert failure.retryable and failure.retry_after is None
    assert failure.retry_error([]).next_retry_delay is None
    assert classify(status_error(404, headers={"Retry-After": "5"}), URL, 1).retry_after is None


# --- the retry budget ----------------------------------------------------------------------


def test_the_unreachable_budget_is_three_attempts_of_the_llm_policy() -> None:
    assert UNREACHABLE_BUDGET == timedelta(seconds=1.5)
    assert attempts_within(timedelta(seconds=1.5), LLM_RETRY) == 3 == UNREACHABLE_ATTEMPTS


def test_attempts_within_follows_the_policy() -> None:
    assert attempts_within(timedelta(), LLM_RETRY) == 1
    assert attempts_within(timedelta(milliseconds=499), LLM_RETRY) == 1
    assert attempts_within(timedelta(milliseconds=500), LLM_RETRY) == 2
    assert attempts_within(timedelta(milliseconds=1499), LLM_RETRY) == 2
    assert attempts_within(timedelta(seconds=3.5), LLM_RETRY) == 4
    assert attempts_within(timedelta(hours=1), LLM_RETRY) == LLM_RETRY.maximum_attempts
    # Unlimited attempts; waits of 1, 2, 2, 2 s once the maximum interval is reached.
    capped = RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=2)
    )
    assert attempts_within(timedelta(seconds=7), capped) == 5
    with pytest.raises(ValueError):
        attempts_within(timedelta(seconds=1), RetryPolicy(backoff_coefficient=0.5))


# --- the details decoder ------------------------------------------------------------------


def test_pieces_survive_the_payload_converter() -> None:
    converter = DataConverter.default.payload_converter
    payloads = converter.to_payloads([pieces_detail(PIECES)])
    # Decoded without a type hint, as heartbeat and failure details are: lists of dicts.
    decoded = converter.from_payloads(payloads)
    assert isinstance(decoded[0][0], dict)
    assert stream_pieces(decoded) == PIECES


def test_decoder_reads_both_detail_shapes_and_nothing() -> None:
    as_dicts: list[Any] = [pieces_detail(PIECES)]
    assert stream_pieces(as_dicts) == PIECES
    assert stream_pieces([list(PIECES)]) == PIECES
    assert stream_pieces(()) == []
    assert stream_pieces([[]]) == []
    assert stream_pieces(["not a list of pieces"]) == []


# --- failed and cancelled turns -----------------------------------------------------------


def test_a_failure_after_the_last_retry_becomes_a_failed_turn() -> None:
    failure = classify(status_error(503, {"error": {"message": "overloaded"}}), URL, 5)
    received = round_trip(activity_error(failure.retry_error(PIECES)))
    assert isinstance(received, ActivityError)
    assert isinstance(received.cause, ApplicationError)
    result = failed_result(received)
    assert result.outcome == TurnOutcome.FAILED
    assert result.error_code == "LLM_HTTP_503"
    assert result.error_message == f"LLM endpoint {URL} answered HTTP 503: overloaded"
    assert result.pieces == PIECES
    assert result.reply == "Hello"


def test_an_unnamed_application_error_is_an_llm_error() -> None:
    cause = ApplicationError("boom", pieces_detail(PIECES[:1]))
    result = failed_result(activity_error(cause))
    assert (result.outcome, result.error_code, result.error_message) == (
        "failed",
        ErrorCode.LLM_ERROR,
        "boom",
    )
    assert result.pieces == PIECES[:1]


def test_a_cancelled_activity_is_a_cancelled_turn() -> None:
    received = round_trip(activity_error(CancelledError("Cancelled", pieces_detail(PIECES))))
    assert isinstance(received, ActivityError)
    result = failed_result(received)
    assert (result.outcome, result.error_code, result.error_message) == (
        "cancelled",
        "CANCELLED",
        "turn cancelled",
    )
    assert result.pieces == PIECES


def test_a_timed_out_activity_keeps_what_it_heartbeated() -> None:
    timeout = TimeoutError(
        "activity Heartbeat timeout",
        type=TimeoutType.HEARTBEAT,
        last_heartbeat_details=[pieces_detail(PIECES)],
    )
    received = round_trip(activity_error(timeout))
    assert isinstance(received, ActivityError)
    result = failed_result(received)
    assert (result.outcome, result.error_code, result.error_message) == (
        "failed",
        "LLM_ERROR",
        "activity Heartbeat timeout",
    )
    assert result.pieces == PIECES


def test_an_activity_error_without_a_cause_uses_its_own_message() -> None:
    result = failed_result(activity_error(None))
    assert (result.outcome, result.error_code, result.error_message, result.pieces) == (
        "failed",
        "LLM_ERROR",
        "Activity task failed",
        [],
    )


# --- the activity, on a real endpoint that answers with an error ----------------------------


class ErrorEndpoint:
    """An HTTP server that answers every request with one error status, body and headers."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: dict[str, str] = {}
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.requests += 1
                body = json.dumps({"error": {"message": "injected"}}).encode()
                self.send_response(endpoint.status)
                for name, value in endpoint.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint() -> Iterator[ErrorEndpoint]:
    server = ErrorEndpoint()
    yield server
    server.server.shutdown()
    server.server.server_close()


def llm_request() -> LLMRequest:
    return LLMRequest(
        agent_id="a",
        message_id="m",
        model="fake-model",
        messages=[ChatMessage(role="user", content="hello")],
        prelude=[],
        first_text_seq=3,
    )


async def run_activity(
    endpoint: ErrorEndpoint, attempt: int = 1, heartbeated: list[Any] | None = None
) -> LLMResult:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt, heartbeat_details=heartbeated or [])
    activities = LLMActivities(LLMEndpoint(base_url=endpoint.url, timeout=5))
    return await env.run(activities.stream_chat, llm_request())


async def test_the_activity_asks_temporal_to_wait_as_the_endpoint_says(
    endpoint: ErrorEndpoint,
) -> None:
    endpoint.status, endpoint.headers = 429, {"Retry-After": "3"}
    with pytest.raises(ApplicationError) as raised:
        await run_activity(endpoint)
    assert raised.value.type == "LLM_HTTP_429"
    assert raised.value.next_retry_delay == timedelta(seconds=3)
    assert raised.value.message == f"LLM endpoint {endpoint.url} answered HTTP 429: injected"
    assert endpoint.requests == 1  # Temporal retries, never the client


async def test_a_retried_attempt_carries_what_earlier_ones_streamed(
    endpoint: ErrorEndpoint,
) -> None:
    endpoint.status = 503
    earlier = PIECES[:1]
    with pytest.raises(ApplicationError) as raised:
        await run_activity(endpoint, attempt=2, heartbeated=[pieces_detail(earlier)])
    assert raised.value.next_retry_delay is None
    carried = stream_pieces(raised.value.details)
    assert carried[-1].at > 0  # when the client was told
    assert [replace(p, at=0.0) for p in carried] == [
        *earlier,
        StreamPiece(kind=EventKind.RESTART, text=""),
    ]


async def test_the_activity_ends_the_turn_on_a_client_error(endpoint: ErrorEndpoint) -> None:
    endpoint.status = 401
    result = await run_activity(endpoint)
    assert (result.outcome, result.error_code, result.error_message) == (
        "failed",
        "LLM_UNAUTHENTICATED",
        f"LLM endpoint {endpoint.url} answered HTTP 401: injected (check ENGRAM_LLM_API_KEY)",
    )

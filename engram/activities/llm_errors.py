"""What went wrong at the LLM endpoint: the one reading of the openai client's errors.

Each error becomes an `LLMFailure`: the code and message the client will see (naming the endpoint,
never the key), and whether Temporal should try again, and when. The activity raises a retryable
failure for Temporal to retry with the workflow's policy (`LLM_RETRY`) and ends the turn on any
other; after the last retry the workflow turns the raised error into the same failed turn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx2
import openai
from temporalio.exceptions import ApplicationError

from engram.vocabulary import ErrorCode
from engram.workflows.llm_outcome import UNREACHABLE_ATTEMPTS, pieces_detail
from engram.workflows.types import StreamPiece

# Longer waits than this are cut short: the turn's client is waiting, and the retry policy's own
# backoff takes over if the endpoint is still busy.
MAX_RETRY_AFTER = 60.0
# Statuses whose Retry-After header says when the endpoint expects to answer again.
RETRY_AFTER_STATUSES = frozenset({429, 503, 529})
# Rate limits ("too many requests"; Anthropic's "overloaded"): a long Retry-After is a quota wait.
QUOTA_STATUSES = frozenset({429, 529})

NAMED_STATUSES = {
    401: ErrorCode.LLM_UNAUTHENTICATED,
    403: ErrorCode.LLM_PERMISSION_DENIED,
    404: ErrorCode.LLM_NOT_FOUND,
}
HINTS = {401: " (check ENGRAM_LLM_API_KEY)", 404: " (unknown model or wrong base URL)"}


@dataclass(frozen=True)
class LLMFailure:
    """One endpoint error, as the turn reports it."""

    code: str
    # Names the endpoint and the cause; safe to show the client and to log.
    message: str
    retryable: bool
    # Seconds the endpoint asked to wait before the next attempt (Retry-After); None: the policy's.
    retry_after: float | None = None
    # A rate limit's whole Retry-After (not cut to MAX_RETRY_AFTER): how long its quota lasts.
    quota_wait: float | None = None

    @property
    def endpoint_fault(self) -> bool:
        """The endpoint is down, faulty, slow or out of quota (not the request at fault): another
        endpoint may answer, and its circuit breaker counts it. Unreachable stays a fault when
        it is no longer retried."""
        return self.retryable or self.code in (ErrorCode.LLM_TIMEOUT, ErrorCode.LLM_UNREACHABLE)

    def fails_over(self, quota_wait_after: float) -> bool:
        """Whether the next model of the chain should answer instead. A short Retry-After is
        waited out on the same model, as the endpoint asked."""
        if not self.endpoint_fault:
            return False
        return self.quota_wait is None or self.quota_wait > quota_wait_after

    def retry_error(self, pieces: Sequence[StreamPiece]) -> ApplicationError:
        """The error that has Temporal try again, carrying what this attempt streamed."""
        delay = None if self.retry_after is None else timedelta(seconds=self.retry_after)
        return ApplicationError(
            self.message, pieces_detail(pieces), type=self.code, next_retry_delay=delay
        )


def classify(
    err: openai.APIConnectionError | openai.APIStatusError | httpx2.TransportError,
    base_url: str,
    attempt: int,
) -> LLMFailure:
    """What `err`, raised by this activity's `attempt` (1 for the first) at `base_url`, means."""
    where = f"LLM endpoint {base_url}"
    if isinstance(err, httpx2.TransportError):
        # Raised while the stream is read: the endpoint stopped sending mid-reply.
        code = ErrorCode.LLM_TIMEOUT if isinstance(err, httpx2.TimeoutException) else None
        return LLMFailure(
            code=code or ErrorCode.LLM_UNREACHABLE,
            message=f"{where} broke off its reply ({type(err).__name__})",
            retryable=True,
        )
    if isinstance(err, openai.APITimeoutError):
        return LLMFailure(code=ErrorCode.LLM_TIMEOUT, message=f"{where} timed out", retryable=True)
    if isinstance(err, openai.APIConnectionError):
        if attempt < UNREACHABLE_ATTEMPTS:
            return LLMFailure(
                code=ErrorCode.LLM_UNREACHABLE, message=f"{where} is unreachable", retryable=True
            )
        return LLMFailure(
            code=ErrorCode.LLM_UNREACHABLE,
            message=f"{where} is unreachable ({_root_cause(err)})",
            retryable=False,
        )
    status = err.status_code
    headers = err.response.headers
    return LLMFailure(
        code=NAMED_STATUSES.get(status, ErrorCode.http(status)),
        message=f"{where} {_describe(err)}",
        # Overload and server faults pass; anything else would fail the same way again.
        retryable=status == 429 or status >= 500,
        retry_after=retry_after(headers) if status in RETRY_AFTER_STATUSES else None,
        quota_wait=retry_after(headers, longest=math.inf) if status in QUOTA_STATUSES else None,
    )


def retry_after(
    headers: Mapping[str, str], now: datetime | None = None, longest: float = MAX_RETRY_AFTER
) -> float | None:
    """The wait a response asks for, in seconds (at most `longest`); None if it asks none.

    Retry-After is either seconds or an HTTP date; OpenAI's own retry-after-ms, when present, is
    the more precise of the two.
    """
    seconds: float | None = None
    if millis := headers.get("retry-after-ms"):
        seconds = _number(millis)
        seconds = None if seconds is None else seconds / 1000
    if seconds is None and (value := headers.get("retry-after")):
        seconds = _number(value)
        if seconds is None:
            seconds = _seconds_until(value, now or datetime.now(UTC))
    if seconds is None or seconds <= 0:
        return None
    return min(seconds, longest)


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, by RFC 5322
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()


def _describe(err: openai.APIStatusError) -> str:
    body = err.body
    detail = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        detail = str(inner.get("message", "")) if isinstance(inner, dict) else str(inner)
    return (
        f"answered HTTP {err.status_code}: {detail or err.message}{HINTS.get(err.status_code, '')}"
    )


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err) or type(err).__name__

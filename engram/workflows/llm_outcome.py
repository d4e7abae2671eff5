"""How an LLM call that does not complete ends: its retry policy, its failed or cancelled result.

Shared by the activity (a failure it will not retry, a cancellation) and the workflow (an activity
that failed for good), so both build the same `LLMResult` and read the streamed pieces carried in
failure and heartbeat details the same way. Imported by workflow code: nothing here may touch the
network, the clock or the openai client.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    TimeoutError,
)

from engram.vocabulary import ErrorCode, TurnOutcome
from engram.workflows.types import LLMResult, ReplyCheckpoint, StreamPiece

LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)

# How long a refused connection is retried before the turn fails: long enough to ride out an
# endpoint restart, short enough that a misconfigured endpoint is reported at once.
UNREACHABLE_BUDGET = timedelta(seconds=1.5)

CANCELLED_MESSAGE = "turn cancelled"


def attempts_within(budget: timedelta, policy: RetryPolicy) -> int:
    """How many attempts `policy` makes before its waits between them add up to more than
    `budget` (never more than its maximum attempts)."""
    # Temporal's defaults for the fields a policy may leave unset.
    delay = policy.initial_interval or timedelta(seconds=1)
    longest = policy.maximum_interval or delay * 100
    if delay <= timedelta() or policy.backoff_coefficient < 1:
        raise ValueError("a retry policy's waits must be positive and never shrink")
    attempts, waited = 1, timedelta()
    while policy.maximum_attempts <= 0 or attempts < policy.maximum_attempts:
        if waited + delay > budget:
            break
        waited += delay
        attempts += 1
        delay = min(delay * policy.backoff_coefficient, longest)
    return attempts


# The attempt at which a refused connection fails the turn instead of being retried.
UNREACHABLE_ATTEMPTS = attempts_within(UNREACHABLE_BUDGET, LLM_RETRY)


def pieces_detail(pieces: Sequence[StreamPiece]) -> list[dict[str, Any]]:
    """The streamed pieces as one heartbeat or failure detail: plain data any converter keeps.
    Sent every second of a generation, so a shallow copy (the fields are plain values) rather
    than `asdict`'s deep one."""
    return [dict(vars(p)) for p in pieces]


def stream_pieces(details: Sequence[object]) -> list[StreamPiece]:
    """The pieces carried in failure or heartbeat details (`[pieces_detail(...)]`), [] if none.

    Details decoded without a type hint hold dicts; details raised in this process may still hold
    the pieces themselves.
    """
    if not details or not isinstance(details[0], list):
        return []
    return [p if isinstance(p, StreamPiece) else StreamPiece(**p) for p in details[0]]


def checkpoint_of(details: Sequence[object]) -> ReplyCheckpoint | None:
    """The checkpoint a heartbeat carried (`{"checkpoint": ..., "pieces": ...}`), if it did."""
    if not details or not isinstance(details[0], dict) or "checkpoint" not in details[0]:
        return None
    detail = details[0]
    return ReplyCheckpoint(str(detail["checkpoint"]), int(detail.get("pieces", 0)))


def failed(pieces: list[StreamPiece], code: str, message: str) -> LLMResult:
    """A turn the LLM call failed, keeping what it streamed so the turn's record is whole."""
    return LLMResult(
        outcome=TurnOutcome.FAILED, pieces=pieces, error_code=code, error_message=message
    )


def cancelled(pieces: list[StreamPiece]) -> LLMResult:
    """A turn a client cancelled; its partial reply is kept only as streamed pieces."""
    return LLMResult(
        outcome=TurnOutcome.CANCELLED,
        pieces=pieces,
        error_code=ErrorCode.CANCELLED,
        error_message=CANCELLED_MESSAGE,
    )


def failed_result(err: ActivityError) -> LLMResult:
    """The turn an LLM activity ended with when it failed for good (retries spent, a timeout, a
    cancellation), keeping what its last attempt streamed."""
    cause = err.cause
    details: Sequence[object] = ()
    if isinstance(cause, (ApplicationError, CancelledError)):
        details = cause.details
    elif isinstance(cause, TimeoutError):
        details = cause.last_heartbeat_details
    pieces = stream_pieces(details)
    if isinstance(cause, CancelledError):
        return cancelled(pieces)
    # The activity names the failure in the error's type; anything else is unnamed.
    code = cause.type if isinstance(cause, ApplicationError) and cause.type else ErrorCode.LLM_ERROR
    message = cause.message if isinstance(cause, FailureError) else err.message
    result = failed(pieces, code, message)
    result.checkpoint = checkpoint_of(details)
    return result

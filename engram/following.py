"""Waiting for a turn's end from outside the workflow (the gateway, a delegating agent).

A turn's followers share one `wait_for_turn` update, `wait-turn-<message id>`: Temporal answers a
second request with the same id from the first, so any number of followers hold one of the
agent's few updates in flight. When the agent already has as many waiters as it allows, it
answers `later`; the caller then polls the `turn_state` query, which costs no update, and asks
again once the turn runs or has ended. A caller that hears the turn's tokens (the gateway) takes
them to mean the turn runs, at once, rather than on its next poll.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateHandle
from temporalio.service import RPCError, RPCStatusCode

from engram.vocabulary import Query, TurnState, Update
from engram.workflows.types import TurnResult, TurnStateInput, WaitTurnInput

T = TypeVar("T")

# Temporal rejects an update with this when the workflow task that carried it completed without
# the worker seeing it (seen under load, with many updates at once). Nothing was recorded, and the
# update's id makes a retry safe.
UNPROCESSED = "wasn't processed by worker"
UNPROCESSED_RETRIES = 5

# A run hands its waiters over to its next run within moments of answering them "continued".
HAND_OVER_PAUSE = 0.05
POLL_FIRST, POLL_MOST = 0.05, 1.0
QUERY_TIMEOUT, QUERY_TRIES = timedelta(seconds=5), 6


# Resolves once the turn's tokens have come: it runs, or has run.
Heard = Callable[[], Awaitable[object]]


async def turn_ended(
    handle: WorkflowHandle[Any, Any],
    message_id: str,
    first: Awaitable[TurnResult] | None = None,
    heard: Heard | None = None,
) -> TurnResult:
    """The turn's whole record once it has ended (`first`: a wait already asked for, such as
    the `chat` update that sent the message). TurnGone if a caller told to come back `later`
    comes back after the turn has left the agent's state."""
    result = await (first or wait_turn(handle, message_id))
    while result.continued or result.later:
        if result.later:
            result = await _when_room(handle, message_id, heard)
        else:
            # A run that continued as new mid-turn: wait again, on the agent's next run.
            await asyncio.sleep(HAND_OVER_PAUSE)
            result = await wait_turn(handle, message_id)
    return result


async def wait_turn(
    handle: WorkflowHandle[Any, Any], message_id: str, update_id: str = ""
) -> TurnResult:
    result: TurnResult = await retrying_unprocessed(
        lambda: handle.execute_update(
            Update.WAIT_FOR_TURN,
            WaitTurnInput(message_id=message_id),
            id=update_id or f"wait-turn-{message_id}",
            result_type=TurnResult,
        )
    )
    return result


async def retrying_unprocessed(call: Callable[[], Awaitable[T]]) -> T:
    """`call` (an update), made again while Temporal answers that no worker processed it."""
    for attempt in range(UNPROCESSED_RETRIES):
        try:
            return await call()
        except WorkflowUpdateFailedError as err:
            if UNPROCESSED not in str(err.cause) or attempt == UNPROCESSED_RETRIES - 1:
                raise
            await asyncio.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


async def accepted(
    start: Callable[[], Awaitable[WorkflowUpdateHandle[T]]],
) -> WorkflowUpdateHandle[T]:
    """An update started (to its acceptance), retried as `retrying_unprocessed` does."""

    async def once() -> WorkflowUpdateHandle[T]:
        update = await start()
        # An update answered at once carries its outcome, where a rejection waits to be raised.
        if update._known_outcome is not None:
            await update.result()
        return update

    return await retrying_unprocessed(once)


async def patient_query(
    handle: WorkflowHandle[Any, Any], query: str, argument: object, result_type: type[T]
) -> T:
    """A query, asked again while it times out. Under a burst of updates Temporal can leave a
    query unanswered until its deadline (seen with server 1.32): a short deadline and another try
    answer in moments instead of the default 30 seconds."""
    for attempt in range(QUERY_TRIES):
        try:
            answer: T = await handle.query(
                query, argument, result_type=result_type, rpc_timeout=QUERY_TIMEOUT
            )
            return answer
        except RPCError as err:
            if not timed_out(err) or attempt == QUERY_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def timed_out(err: BaseException) -> bool:
    """A Temporal call's deadline passed (the SDK reports its own as CANCELLED)."""
    return isinstance(err, RPCError) and err.status in (
        RPCStatusCode.CANCELLED,
        RPCStatusCode.DEADLINE_EXCEEDED,
    )


async def _turn_state(handle: WorkflowHandle[Any, Any], message_id: str) -> str:
    return await patient_query(handle, Query.TURN_STATE, TurnStateInput(message_id=message_id), str)


class TurnGone(LookupError):
    """The turn ended and has left the agent's state since (archived, or before a continue as
    new): its events are in the transcript store."""


async def _when_room(
    handle: WorkflowHandle[Any, Any], message_id: str, heard: Heard | None
) -> TurnResult:
    """Poll until the turn runs (then join its followers' shared wait, which the running turn
    always admits) or has ended (then an update of its own answers at once)."""
    delay = POLL_FIRST
    joined = False
    while True:
        state = await _state(handle, message_id, None if joined else heard)
        if state == TurnState.UNKNOWN:
            raise TurnGone(message_id)
        if state == TurnState.ENDED:
            return await _ended(handle, message_id, f"wait-turn-{message_id}-{uuid.uuid4()}")
        if state == TurnState.RUNNING and not joined:
            # Once only: Temporal keeps a shared update's answer, `later` included, for the run.
            joined = True
            result = await _ended(handle, message_id, f"wait-turn-{message_id}")
            if not result.later:
                return result
        await _first(asyncio.sleep(delay), None if joined else heard)
        delay = min(delay * 2, POLL_MOST)


async def _state(handle: WorkflowHandle[Any, Any], message_id: str, heard: Heard | None) -> str:
    """The turn's state; running, with no more asked, once its tokens are heard: under a stream
    of updates Temporal can hold a query back for seconds, where an update is answered at once."""
    query = asyncio.ensure_future(_turn_state(handle, message_id))
    if await _first(query, heard):
        return query.result()
    return TurnState.RUNNING


async def _first(work: Awaitable[object], heard: Heard | None) -> bool:
    """Await `work` unless the turn is heard first (then `work` is cancelled); whether it ended."""
    task = asyncio.ensure_future(work)
    if heard is None:
        await task
        return True
    tokens = asyncio.ensure_future(heard())
    try:
        await asyncio.wait([task, tokens], return_when=asyncio.FIRST_COMPLETED)
    finally:
        tokens.cancel()
        finished = task.done()
        task.cancel()
    return finished


async def _ended(handle: WorkflowHandle[Any, Any], message_id: str, update_id: str) -> TurnResult:
    """The turn's record from a wait that its running, or ended, turn answers."""
    try:
        return await wait_turn(handle, message_id, update_id)
    except WorkflowUpdateFailedError:
        # Archived meanwhile, or it will never be answered (withdrawn, deleted).
        if await _turn_state(handle, message_id) != TurnState.UNKNOWN:
            raise
        raise TurnGone(message_id) from None

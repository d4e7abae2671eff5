"""Waiting out a rate limit: every model of the agent's chain is out of quota for longer than the
worker is willing to hold an activity, so the agent waits on a durable timer instead.

Workflow code. The wait holds no worker slot, survives any crash (the timer is Temporal's), and a
cancel or a deletion cuts it short. The turn then calls the model again, from its current step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from temporalio import workflow

from engram.vocabulary import Notice
from engram.workflows.events import EventLog
from engram.workflows.types import AgentState

# A wait is never shorter than this: the endpoint asked for longer than the quota threshold.
SHORTEST = 1.0


async def wait(
    seconds: float,
    state: AgentState,
    log: EventLog,
    message_id: str,
    *,
    stopping: Callable[[], bool],
    status_changed: Callable[[], None],
    announce: Callable[[], Awaitable[None]],
) -> bool:
    """Wait `seconds` (status `waiting_for_quota`, and a notice saying until when); whether the
    wait ran its course (False: `stopping` cut it short)."""
    now = workflow.now()
    until = now + timedelta(seconds=max(seconds, SHORTEST))
    state.quota_until = until.timestamp()
    status_changed()
    log.notice(
        Notice.WAITING_FOR_QUOTA,
        f"out of quota: waiting until {_stamp(until)}",
        now=now.timestamp(),
        message_id=message_id,
    )
    try:
        await announce()
        await workflow.wait_condition(stopping, timeout=until - now, timeout_summary="quota wait")
        return False
    except TimeoutError:
        return True
    finally:
        state.quota_until = 0.0
        status_changed()


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

"""Sending a turn's recorded events to its gateway before the next LLM call would carry them.

A client must see a call that waits for it (and one whose tool runs long) at once. Workflow code.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

# Activities run outside the sandbox (their HTTP client must not be imported into it).
with workflow.unsafe.imports_passed_through():
    from engram.activities.llm_stream import LLMActivities
from engram.workflows import patches
from engram.workflows.types import AnnounceInput

TIMEOUT = timedelta(seconds=5)
ONCE = RetryPolicy(maximum_attempts=1)


async def announce(request: AnnounceInput) -> bool:
    """Relay `request.events`; whether they were sent (best effort, like all relaying: the
    durable record still has every event).

    A regular activity, not a local one: it starts only once the workflow task that reached this
    point is recorded, so a client never answers a call (an approval, a tool's result) that a
    crash could still take back."""
    try:
        if patches.check(patches.ANNOUNCE_AFTER_COMMIT):
            await workflow.execute_activity_method(
                LLMActivities.announce, request, start_to_close_timeout=TIMEOUT, retry_policy=ONCE
            )
        else:
            await workflow.execute_local_activity_method(
                LLMActivities.announce, request, start_to_close_timeout=TIMEOUT, retry_policy=ONCE
            )
        return True
    except ActivityError:
        workflow.logger.warning("could not announce the events of %s", request.agent_id)
        return False

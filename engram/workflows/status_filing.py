"""The status search attribute ListAgents and operators filter on: lasting states only, since
each upsert is a history event; the describe query reports the live status."""

from __future__ import annotations

from temporalio import workflow

from engram.vocabulary import STATUS_ATTRIBUTE, AgentStatus
from engram.workflows import patches, ui


def file_under(status: AgentStatus, *, paused: bool) -> None:
    """Keep the attribute at the lasting status that `status` stands for."""
    if status == AgentStatus.THINKING or status == filed_under():
        # Before the patch every status was filed, and a turn's end refiled a paused agent.
        if not patches.check(patches.QUIET_THINKING):
            workflow.upsert_search_attributes([STATUS_ATTRIBUTE.value_set(status)])
            return
    lasting = ui.lasting(status, paused=paused)
    if lasting != filed_under():
        workflow.upsert_search_attributes([STATUS_ATTRIBUTE.value_set(lasting)])


def filed_under() -> str | None:
    return workflow.info().typed_search_attributes.get(STATUS_ATTRIBUTE)

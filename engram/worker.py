"""The worker: runs agent workflows and their LLM activities."""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from engram import TASK_QUEUE
from engram.activities.archive import ArchiveActivities
from engram.activities.llm_stream import LLMActivities
from engram.llm_settings import LLMEndpoint
from engram.transcripts import TranscriptStore
from engram.vocabulary import STATUS_ATTRIBUTE
from engram.workflows.agent_workflow import AgentWorkflow

log = logging.getLogger(__name__)


async def ensure_search_attributes(client: Client) -> None:
    """Register EngramStatus, which ListAgents filters on, if the namespace lacks it."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    if STATUS_ATTRIBUTE.name in existing.custom_attributes:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={
                    STATUS_ATTRIBUTE.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                },
            )
        )
    except RPCError as err:  # e.g. Temporal Cloud, where an admin registers it
        log.warning("could not register search attribute %s: %s", STATUS_ATTRIBUTE.name, err)


def workflow_runner() -> SandboxedWorkflowRunner:
    # The workflow's imports are deterministic libraries; re-importing them into every sandbox
    # would cost start-up time for nothing. tiktoken loads its encodings (behind a lock) on first
    # use, from inside a workflow.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            "engram", "tiktoken", "tiktoken_ext"
        )
    )


def build_worker(client: Client, endpoint: LLMEndpoint, store: TranscriptStore) -> Worker:
    llm = LLMActivities(endpoint, temporal=client)
    archive = ArchiveActivities(store)
    return Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[AgentWorkflow],
        activities=[
            llm.stream_chat,
            llm.summarize,
            archive.archive_events,
            archive.archive_turns,
        ],
        workflow_runner=workflow_runner(),
        # Cancel requests reach a streaming activity through heartbeats: keep them frequent.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=timedelta(seconds=10),
    )

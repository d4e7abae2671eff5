"""The worker: runs agent workflows, their LLM activities and their tools, and the scheduled
wake-ups that start agents' runs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import engram
from engram import TASK_QUEUE
from engram.activities.archive import ArchiveActivities
from engram.activities.delegation import Delegation
from engram.activities.early_start import EarlyStartInterceptor
from engram.activities.llm_stream import LLMActivities
from engram.activities.recall import RecallActivities
from engram.activities.tenant_budget import TenantBudgets
from engram.activities.tool_calls import ToolActivities
from engram.activities.wake_up import WakeUpActivities
from engram.embeddings.client import Embedder
from engram.embeddings.hybrid import HybridSearch
from engram.embeddings.settings import EmbeddingSettings
from engram.llm_settings import LLMEndpoint, LLMEndpoints
from engram.prices import PriceTable
from engram.tools import ToolCatalog, ToolRegistry
from engram.tools.catalog import agent_tools
from engram.tools.mcp_tools import McpServers, parse_mcp_servers
from engram.tools.tool_set import ALIVE_WINDOW, check_same_tools
from engram.transcripts import ToolCatalogStore, TranscriptStore
from engram.vocabulary import (
    MODEL_ATTRIBUTE,
    PARENT_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    TENANT_ATTRIBUTE,
)
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.wake_up import WakeUpWorkflow

log = logging.getLogger(__name__)

# Activities one worker runs at once: LLM calls, tools, and the short calls that send, check and
# withdraw tasks to other agents. Waiting on another agent (a delegation), or for the run a
# scheduled wake-up started, holds none of these: it waits in workflow code. A tool call holds one
# for as long as it runs, so a worker whose tools are slow and many needs more (or more workers).
# Written out rather than left to the SDK's default (the same number), so it is a decision, not a
# surprise.
MAX_CONCURRENT_ACTIVITIES = 100


async def ensure_search_attributes(client: Client) -> None:
    """Register the search attributes ListAgents and operators filter on (EngramStatus,
    EngramTenant, EngramModel, EngramParent) if the namespace lacks them."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = [
        a.name
        for a in (STATUS_ATTRIBUTE, TENANT_ATTRIBUTE, MODEL_ATTRIBUTE, PARENT_ATTRIBUTE)
        if a.name not in existing.custom_attributes
    ]
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={
                    name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing
                },
            )
        )
    except RPCError as err:  # e.g. Temporal Cloud, where an admin registers it
        log.warning("could not register search attributes %s: %s", ", ".join(missing), err)


def workflow_runner(strict: bool = False) -> SandboxedWorkflowRunner:
    """The sandbox workflows run in. Strict, Engram's workflow code (engram.workflows) is imported
    into each workflow's sandbox, under its restrictions, so nondeterminism there fails; the rest
    of Engram and tiktoken (which loads its encodings behind a lock on first use, from inside a
    workflow) are passed through. The replay and in-process tests run strict; production passes
    all of Engram through, as a strict sandbox costs each cached agent about 380 KB more and each
    evicted agent's turn about 70 ms more (bench/sandbox_cost.py)."""
    engram_modules = STRICT_PASSTHROUGH if strict else ("engram",)
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(
            *engram_modules, "tiktoken", "tiktoken_ext"
        )
    )


# Every part of Engram but its workflow code (some packages have no __init__.py: list the files),
# and the workflows' data model, engram.workflows.types and the settings it holds: dataclasses
# without logic of their own, which the activities and clients passed through use too. Imported
# twice, a workflow's state would mix two classes of each (an activity's result decoded as one,
# the workflow's own as the other).
STRICT_PASSTHROUGH = (
    *sorted(
        f"engram.{path.stem}"
        for path in Path(engram.__file__).parent.iterdir()
        if path.stem not in {"workflows", "__init__", "__pycache__"}
        and (path.is_dir() or path.suffix == ".py")
    ),
    "engram.workflows.types",
    "engram.workflows.settings",
)


def load_tools(modules: str, mcp_servers: list[str]) -> ToolActivities:
    """The tools this worker runs: functions from `modules` (comma-separated module names) and
    those of the MCP servers given as `NAME=URL` or `NAME=command args`."""
    registry = ToolRegistry()
    registry.load_modules(modules)
    return ToolActivities(registry, McpServers(parse_mcp_servers(mcp_servers)))


async def join_workers(
    client: Client,
    tools: ToolActivities,
    store: ToolCatalogStore,
    alive_window: timedelta = ALIVE_WINDOW,
) -> None:
    """Check that the workers running now run the same tools as this one, then publish them.

    Raises DifferentTools (engram.tools.tool_set), saying what differs and what to do, while
    workers with other tools are running: any worker may take any tool call.
    """
    catalog = await tools.list_tools()
    published = await asyncio.to_thread(store.tools)
    await check_same_tools(
        client, TASK_QUEUE, tools.tool_set, agent_tools(catalog), published, alive_window
    )
    await _publish(catalog, store)


async def publish_catalog(tools: ToolActivities, store: ToolCatalogStore) -> None:
    """Tell the gateways (through the shared store) which tools this worker runs."""
    await _publish(await tools.list_tools(), store)


async def _publish(catalog: ToolCatalog, store: ToolCatalogStore) -> None:
    for problem in catalog.problems:
        log.warning("tools not available: %s", problem)
    await asyncio.to_thread(store.publish_tools, agent_tools(catalog))
    if catalog.tools:
        log.info("tools: %s", ", ".join(t.name for t in catalog.tools))


def deployment(name: str, build_id: str) -> WorkerDeploymentConfig | None:
    """Worker Deployment Versioning for a worker of version `name`.`build_id`, or None (an
    unversioned worker, as before versioning) when neither is given.

    Agents are PINNED: each run stays on the version it started on, whatever is deployed
    meanwhile, and moves to the deployment's current version only when it continues as new
    between turns (AgentWorkflow). Wake-ups are pinned too: one lives as long as the agent's run
    it started, which stays on its version anyway. The behaviour is the worker's default, not
    the workflow definitions': Temporal refuses a workflow task that names a behaviour from an
    unversioned worker ("versioning behavior cannot be specified without deployment options"),
    and unversioned workers run the same definitions.
    """
    if not name and not build_id:
        return None
    if not name or not build_id:
        raise ValueError("a versioned worker needs both a deployment name and a build id")
    if "." in name:
        # Temporal writes a version as NAME.BUILD_ID: the name cannot hold the separator.
        raise ValueError(f"a deployment name cannot contain '.': {name!r}")
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=name, build_id=build_id),
        use_worker_versioning=True,
        default_versioning_behavior=VersioningBehavior.PINNED,
    )


def build_worker(
    client: Client,
    endpoint: LLMEndpoint | LLMEndpoints,
    store: TranscriptStore,
    tools: ToolActivities | None = None,
    prices: PriceTable | None = None,
    tenant_daily_budget_usd: float = 0.0,
    versioning: WorkerDeploymentConfig | None = None,
    embeddings: EmbeddingSettings | None = None,
) -> Worker:
    budgets = TenantBudgets(store, tenant_daily_budget_usd)
    llm = LLMActivities(endpoint, temporal=client, store=store, prices=prices, budgets=budgets)
    # The model's request leaves while the turn is being committed (activities/early_start.py),
    # from the loop this worker's activities run on.
    llm.early.bind(asyncio.get_running_loop())
    # Search by meaning, when an embeddings model is configured: archiving nudges the indexer,
    # recall searches by words and by meaning.
    hybrid = None
    if embeddings is not None and embeddings.enabled:
        embedder = Embedder(llm.endpoints, embeddings.model)
        hybrid = HybridSearch(store, embedder, embeddings)
        log.info(
            "recall searches by meaning too: %s at %s", embedder.name, embedder.endpoint.base_url
        )
    archive = ArchiveActivities(store, hybrid.indexer if hybrid else None)
    recall = RecallActivities(store, hybrid)
    tools = tools or ToolActivities(ToolRegistry())
    # Other agents as tools: their calls talk to the agents' workflows through this client.
    delegation = Delegation(client)
    tools.delegation = delegation
    # A tool call's announcement rides in its activity (workflows/announce.py).
    tools.announce = llm.announce
    wake_up = WakeUpActivities(client)
    return Worker(
        client,
        task_queue=TASK_QUEUE,
        # Carries the worker's tool set, for a starting worker to compare (join_workers).
        identity=tools.identity,
        workflows=[AgentWorkflow, WakeUpWorkflow],
        activities=[
            llm.stream_chat,
            llm.summarize,
            llm.load_reply,
            llm.announce,
            archive.archive_events,
            archive.archive_turns,
            recall.recall,
            archive.forget_after,
            # Every `tool:<name>` activity, so each call shows in the Web UI as the tool it ran.
            tools.call_tool,
            tools.list_tools,
            # A call to another agent waits in workflow code, between these short activities.
            delegation.submit,
            delegation.check,
            delegation.withdraw,
            wake_up.firing,
            wake_up.start_run,
            # A wake-up waits for its run in workflow code, between these short activities.
            wake_up.follow_run,
            wake_up.check_run,
            wake_up.watch_run,
        ],
        workflow_runner=workflow_runner(),
        interceptors=[EarlyStartInterceptor(llm.early, TASK_QUEUE)],
        max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
        # Cancel requests reach a streaming activity through heartbeats: keep them frequent.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=timedelta(seconds=10),
        deployment_config=versioning,
    )

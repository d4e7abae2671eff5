"""`engram agents upgrade [ID ...|--all]`: move running agents onto the workers' current code.

Each agent named (with --all, each running agent Temporal's visibility lists) is sent the `upgrade`
signal and continues as new at its next idle point between turns: at once if it is idle, once its
turn or run ends otherwise. A patch can be retired only once every agent has continued as new on a
recent enough release (engram/workflows/patches.py). An operator's command: it talks to Temporal,
not to a gateway, so it reaches every tenant's agents.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from enum import StrEnum

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from engram import WORKFLOW_ID_PREFIX
from engram.temporal_connection import TemporalSettings
from engram.vocabulary import Signal

# Signals in flight at once, for --all over many agents.
CONCURRENCY = 16
POLL_SECONDS = 0.2


class Outcome(StrEnum):
    CONTINUED = "continued as new"
    PENDING = "signalled: continues as new once its turn or run ends"
    NOT_RUNNING = "not running"


@dataclass
class Upgrade:
    agent_id: str
    outcome: Outcome


async def running_agents(client: Client) -> list[str]:
    """Every running agent's id, as ListAgents finds them (Temporal's visibility, which lists a
    new agent shortly after it starts)."""
    query = "WorkflowType = 'AgentWorkflow' AND ExecutionStatus = 'Running'"
    return [
        execution.id.removeprefix(WORKFLOW_ID_PREFIX)
        async for execution in client.list_workflows(query)
    ]


async def upgrade_agents(client: Client, agent_ids: list[str], wait: float) -> list[Upgrade]:
    """Signal each agent, then wait up to `wait` seconds for each to continue as new."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(agent_id: str) -> Upgrade:
        async with limit:
            return await _upgrade(client, agent_id, wait)

    return list(await asyncio.gather(*(one(a) for a in agent_ids)))


async def _upgrade(client: Client, agent_id: str, wait: float) -> Upgrade:
    workflow_id = WORKFLOW_ID_PREFIX + agent_id
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            return Upgrade(agent_id, Outcome.NOT_RUNNING)
        # To the run just described, so a run that ends meanwhile is not taken for this one.
        await client.get_workflow_handle(workflow_id, run_id=described.run_id).signal(
            Signal.UPGRADE
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            # Gone, or its run continued as new just now (on the current code as well).
            return Upgrade(agent_id, Outcome.NOT_RUNNING)
        raise
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        if (await client.get_workflow_handle(workflow_id).describe()).run_id != described.run_id:
            return Upgrade(agent_id, Outcome.CONTINUED)
        if loop.time() >= deadline:
            return Upgrade(agent_id, Outcome.PENDING)
        await asyncio.sleep(POLL_SECONDS)


def run_upgrade(args: argparse.Namespace) -> int:
    if bool(args.agent_ids) == args.all:
        print("name the agents to upgrade, or give --all")
        return 2
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    settings = TemporalSettings.from_args(args)
    try:
        client = await settings.connect()
    except RuntimeError as err:
        print(f"cannot reach Temporal at {settings.address}: {err}")
        return 1
    agent_ids = await running_agents(client) if args.all else list(args.agent_ids)
    upgrades = await upgrade_agents(client, agent_ids, args.wait)
    for upgrade in upgrades:
        print(f"{upgrade.agent_id}  {upgrade.outcome}")
    counts = {o: sum(u.outcome == o for u in upgrades) for o in Outcome}
    print(
        f"{len(upgrades)} agents: {counts[Outcome.CONTINUED]} continued as new, "
        f"{counts[Outcome.PENDING]} will once idle, {counts[Outcome.NOT_RUNNING]} not running"
    )
    # A named agent that is not running is an error; under --all it merely ended meanwhile.
    return 1 if counts[Outcome.NOT_RUNNING] and not args.all else 0

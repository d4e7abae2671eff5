"""`engram agents stop --tenant T | --all`: the kill switch. Every running agent of a tenant (or
every one) is paused at once with the control pause, as a client's Pause does: new messages and a
run's next steps wait until resume. An operator's command: it talks to Temporal, not to a gateway.

The turn in progress is not cut off (cancel it separately to stop its spend at once); a run stops
before its next step.

`engram agents resume --tenant T | --all` undoes it with the control resume, which also has an
agent waiting for its tenant's daily budget (status budget_exhausted) try its call again.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from temporalio.client import Client
from temporalio.service import RPCError

from engram import WORKFLOW_ID_PREFIX
from engram.temporal_connection import TemporalSettings
from engram.vocabulary import TENANT_ATTRIBUTE, Command, Update
from engram.workflows.types import ControlInput

# Updates in flight at once: enough that a hundred agents pause within a second or two.
CONCURRENCY = 64


async def tenant_agents(client: Client, tenant: str | None) -> list[str]:
    """Every running agent of `tenant` (None: of every tenant), as Temporal's visibility lists
    them."""
    query = "WorkflowType = 'AgentWorkflow' AND ExecutionStatus = 'Running'"
    if tenant is not None:
        query += f" AND {TENANT_ATTRIBUTE.name} = '{tenant}'"
    return [
        execution.id.removeprefix(WORKFLOW_ID_PREFIX)
        async for execution in client.list_workflows(query)
    ]


async def pause_agents(client: Client, agent_ids: Sequence[str]) -> dict[str, str]:
    """Pause each agent; agent id -> "" once paused, or why not."""
    return await control_agents(client, agent_ids, Command.PAUSE)


async def control_agents(
    client: Client, agent_ids: Sequence[str], command: Command
) -> dict[str, str]:
    """Send each agent the control `command`; agent id -> "" once applied, or why not."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(agent_id: str) -> tuple[str, str]:
        async with limit:
            handle = client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
            try:
                await handle.execute_update(
                    Update.CONTROL_AGENT, ControlInput(command=command), result_type=str
                )
            except (RPCError, Exception) as err:  # one agent's refusal stops no other
                return agent_id, str(err) or type(err).__name__
            return agent_id, ""

    return dict(await asyncio.gather(*(one(a) for a in agent_ids)))


def run_stop(args: argparse.Namespace) -> int:
    return _run_command(args, Command.PAUSE)


def run_resume(args: argparse.Namespace) -> int:
    return _run_command(args, Command.RESUME)


def _run_command(args: argparse.Namespace, command: Command) -> int:
    if (args.tenant is None) == (not args.all):
        print("give --tenant T, or --all")
        return 2
    return asyncio.run(_run(args, command))


async def _run(args: argparse.Namespace, command: Command) -> int:
    settings = TemporalSettings.from_args(args)
    try:
        client = await settings.connect()
    except RuntimeError as err:
        print(f"cannot reach Temporal at {settings.address}: {err}")
        return 1
    agent_ids = await tenant_agents(client, None if args.all else args.tenant)
    results = await control_agents(client, agent_ids, command)
    done = "paused" if command == Command.PAUSE else "resumed"
    for agent_id, error in results.items():
        print(f"{agent_id}  {error or done}")
    failed = sum(bool(e) for e in results.values())
    print(f"{len(results) - failed} agents {done}, {failed} not")
    return 1 if failed else 0

"""`engram deployment set-current NAME BUILD_ID`: make a worker version the one agents move to.

With Worker Deployment Versioning (`engram worker --deployment-name NAME --build-id ID`), new
agents start on the deployment's current version, and each running agent, pinned to the version
it started on, moves to the current one when it next continues as new between turns. Setting a
version current is the operator's step of a release: Temporal refuses a version no worker of it
has polled yet, so this waits (up to --wait seconds) for the new workers to be seen. An operator's
command: it talks to Temporal, with `engram worker`'s connection flags.
"""

from __future__ import annotations

import argparse
import asyncio

from temporalio.api.enums.v1 import RoutingConfigUpdateState
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from engram.temporal_connection import TemporalSettings

POLL_SECONDS = 0.5
ROUTING_CONFIG_UPDATE_STATE_COMPLETED = (
    RoutingConfigUpdateState.ROUTING_CONFIG_UPDATE_STATE_COMPLETED
)
# What Temporal answers while it has not yet seen a poller of the version (or of the deployment).
NOT_SEEN_YET = (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)


class NotRouted(Exception):
    """The version was made current, but the deployment's task queues do not all route to it."""


async def set_current(client: Client, name: str, build_id: str, wait: float) -> str:
    """Make `name`.`build_id` the deployment's current version; the build id that was current
    before ("" for none: unversioned workers). Waits up to `wait` seconds for Temporal to have
    seen the version's workers, then raises the RPCError it gave; then for its task queues to
    route to it (NotRouted if they do not in time)."""
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace,
        deployment_name=name,
        build_id=build_id,
        identity=client.identity,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            response = await client.workflow_service.set_worker_deployment_current_version(request)
        except RPCError as err:
            if err.status not in NOT_SEEN_YET or loop.time() >= deadline:
                raise
            await asyncio.sleep(POLL_SECONDS)
            continue
        await _propagated(client, name, build_id, deadline)
        return response.previous_deployment_version.build_id


async def _propagated(client: Client, name: str, build_id: str, deadline: float) -> None:
    """Wait until every task queue of the deployment routes to `build_id`. Until then a queue
    may still route to the version before, and an agent starting or continuing as new meanwhile
    would be told its target changed, or wait for workers of that version."""
    loop = asyncio.get_running_loop()
    request = DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
    while True:
        info = (
            await client.workflow_service.describe_worker_deployment(request)
        ).worker_deployment_info
        current = info.routing_config.current_deployment_version.build_id
        if current != build_id:
            raise NotRouted(f"the current version is now {current or 'unversioned'}, set meanwhile")
        if info.routing_config_update_state == ROUTING_CONFIG_UPDATE_STATE_COMPLETED:
            return
        if loop.time() >= deadline:
            raise NotRouted(
                "set, but not yet routed to by every task queue: check with "
                f"`temporal worker deployment describe --name {name}`"
            )
        await asyncio.sleep(POLL_SECONDS / 5)


def run_set_current(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    settings = TemporalSettings.from_args(args)
    try:
        client = await settings.connect()
    except RuntimeError as err:
        print(f"cannot reach Temporal at {settings.address}: {err}")
        return 1
    try:
        previous = await set_current(client, args.name, args.build_id, args.wait)
    except RPCError as err:
        print(f"{args.name} {args.build_id} not made current: {err.message}")
        return 1
    except NotRouted as err:
        print(f"{args.name} {args.build_id}: {err}")
        return 1
    print(
        f"{args.name}: current version {args.build_id} (was {previous or 'unversioned'}); "
        "running agents move to it when they next continue as new between turns "
        "(`engram agents upgrade --all` asks them to now)"
    )
    return 0

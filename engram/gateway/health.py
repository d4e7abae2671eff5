"""The gateway's standard gRPC health service (`grpc.health.v1.Health`), kept in step with Temporal.

A gateway that cannot reach Temporal can serve no call, so it reports SERVING, for the whole
server ("") and for `dura.api.v1.AgentService`, only while Temporal answers its own health check;
load balancers, Kubernetes probes and `engram probe gateway` ask this service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from temporalio.client import Client

from engram.v1 import agent_pb2

log = logging.getLogger(__name__)

AGENT_SERVICE: str = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
SERVICES = (health.OVERALL_HEALTH, AGENT_SERVICE)
CHECK_INTERVAL = 2.0
CHECK_TIMEOUT = timedelta(seconds=2)


class TemporalHealth:
    """The health servicer, and the task that checks Temporal every few seconds to update it."""

    def __init__(self, client: Client, interval: float = CHECK_INTERVAL) -> None:
        self._client = client
        self._interval = interval
        # The package's asyncio servicer (the type stubs know only the threaded one).
        self.servicer: Any = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._serving: bool | None = None
        self._task: asyncio.Task[None] | None = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        """Check once, so that nothing is reported before Temporal has been asked; then watch."""
        await self._update()
        self._task = asyncio.create_task(self._watch(), name="engram-gateway-health")

    async def stop(self) -> None:
        """Stop watching and report NOT_SERVING from now on (the server is going away)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.servicer.enter_graceful_shutdown()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._update()

    async def _update(self) -> None:
        serving = await self._temporal_answers()
        if serving == self._serving:
            return
        if serving:
            log.info("Temporal is reachable: health SERVING")
        else:
            log.warning("Temporal is unreachable: health NOT_SERVING until it answers again")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in SERVICES:
            await self.servicer.set(service, status)
        self._serving = serving

    async def _temporal_answers(self) -> bool:
        try:
            answered: bool = await self._client.service_client.check_health(timeout=CHECK_TIMEOUT)
        except Exception as err:  # any failure to get an answer means: not reachable
            log.debug("Temporal health check failed: %s", err)
            return False
        return answered

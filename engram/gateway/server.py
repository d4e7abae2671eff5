"""The gateway process: AgentService for clients, TokenRelay for workers and the standard gRPC
health service, on one port."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from temporalio.client import Client

from engram.auth.limits import InputBounds
from engram.gateway.agent_service import AgentService, GatewaySettings
from engram.gateway.health import TemporalHealth
from engram.gateway.security import GatewaySecurity
from engram.gateway.token_hub import TokenHub, TokenRelayServicer
from engram.relay.v1 import relay_pb2_grpc
from engram.transcripts import TranscriptStore
from engram.v1 import agent_pb2_grpc

GRACE_SECONDS = 10.0


async def start_gateway(
    client: Client,
    listen: str,
    settings: GatewaySettings,
    store: TranscriptStore,
    security: GatewaySecurity | None = None,
) -> GatewayServer:
    """Serve on `listen` (host:port); the caller stops the server, which stops the health watch.

    Without `security`, keys in the store are still enforced, over plaintext."""
    hub = TokenHub()
    security = security or GatewaySecurity(store)
    server = grpc.aio.server(
        interceptors=security.interceptors(),
        options=[
            # Room for a maximal user message plus protobuf overhead, and no more.
            (
                "grpc.max_receive_message_length",
                settings.max_message_bytes + settings.max_attachments_bytes + 64 * 1024,
            ),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.max_pings_without_data", 0),
        ],
    )
    limits = security.settings.limits
    inputs = InputBounds(limits.stream_inputs, limits.agent_inputs, limits.tenant_inputs)
    service = AgentService(client, hub, settings, store, security.access(client), inputs)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(service, server)
    relay_pb2_grpc.add_TokenRelayServicer_to_server(
        TokenRelayServicer(hub, security.relay_guard()), server
    )
    health = TemporalHealth(client)
    health.add_to_server(server)
    if security.add_port(server, listen) == 0:
        raise OSError(f"gateway cannot listen on {listen}")
    await health.start()
    try:
        await server.start()
    except BaseException:
        await health.stop()
        raise
    return GatewayServer(server, health, service, security)


class GatewayServer(grpc.aio.Server):
    """The started server, owning the health watch: stopping one stops the other. Its `service`
    and `security` are what the HTTP API (engram.http) serves through."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health: TemporalHealth,
        service: AgentService,
        security: GatewaySecurity,
    ) -> None:
        self._server = server
        self._health = health
        self.service = service
        self.security = security

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None = None) -> None:
        # NOT_SERVING first: whoever balances load stops sending calls while these finish.
        await self._health.stop()
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        return await self._server.wait_for_termination(timeout)

"""The gateway process: AgentService for clients and TokenRelay for workers, on one port."""

from __future__ import annotations

import grpc
from temporalio.client import Client

from engram.gateway.agent_service import AgentService, GatewaySettings
from engram.gateway.token_hub import TokenHub, TokenRelayServicer
from engram.relay.v1 import relay_pb2_grpc
from engram.transcripts import TranscriptStore
from engram.v1 import agent_pb2_grpc

GRACE_SECONDS = 10.0


async def start_gateway(
    client: Client, listen: str, settings: GatewaySettings, store: TranscriptStore
) -> grpc.aio.Server:
    """Serve on `listen` (host:port); the caller stops the server."""
    hub = TokenHub()
    server = grpc.aio.server(
        options=[
            # Room for a maximal user message plus protobuf overhead, and no more.
            (
                "grpc.max_receive_message_length",
                settings.max_message_bytes + settings.max_attachments_bytes + 64 * 1024,
            ),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    )
    agent_pb2_grpc.add_AgentServiceServicer_to_server(
        AgentService(client, hub, settings, store), server
    )
    relay_pb2_grpc.add_TokenRelayServicer_to_server(TokenRelayServicer(hub), server)
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"gateway cannot listen on {listen}")
    await server.start()
    return server

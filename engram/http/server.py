"""Serving the HTTP API in the gateway's process (uvicorn), beside the gRPC port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from engram.auth import exposure
from engram.gateway.server import GatewayServer
from engram.http.app import build_app

log = logging.getLogger(__name__)

# Streams still open when the server stops get this long to end.
GRACE_SECONDS = 5


class _Server(uvicorn.Server):
    # The process owns SIGINT and SIGTERM (engram.cli's shutdown); uvicorn must not take them.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, server: _Server, task: asyncio.Task[None]) -> None:
        self._server = server
        self._task = task

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


async def start_http(gateway: GatewayServer, host: str, port: int) -> HttpServer:
    """Serve the HTTP API on host:port through `gateway`'s AgentService and security. Its port
    follows the gRPC port's rule (engram.auth.exposure), which the gateway's security checked
    for the same host before it started."""
    security = gateway.security
    refusal = exposure.refusal(host, security.keyring.has_keys, security.settings.insecure_no_auth)
    if refusal is not None:
        raise SystemExit(refusal)
    tls = security.settings.tls
    config = uvicorn.Config(
        build_app(gateway.service, security, host),
        host=host,
        port=port,
        lifespan="on",  # the MCP endpoint's session manager runs in the app's lifespan
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise SystemExit(f"the HTTP API cannot listen on {host}:{port}")
        await asyncio.sleep(0.02)
    return HttpServer(server, task)

"""The HTTP API's application: the routes over a gateway's AgentService, behind the gate."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from starlette.routing import Route

from engram.auth.interceptor import SMALL_REQUEST_BYTES
from engram.gateway.agent_service import AgentService
from engram.gateway.security import GatewaySecurity
from engram.http import (
    a2a_server,
    console_routes,
    errors,
    mcp_server,
    openai_chat,
    openai_responses,
    resources,
)
from engram.http.gate import Gate, GateMiddleware

# OpenAI's clients resend the whole conversation with every message (only the last is new), so
# their routes take bodies this large; the new message itself is bounded as on gRPC.
OPENAI_BODY_BYTES = 16 * 1024 * 1024
OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses")
# A message's attachments come base64-encoded in its JSON: 10 MiB of files are 13.4 MiB. The
# gateway then holds them to its own limits, per file and per message.
MESSAGE_BODY_BYTES = 16 * 1024 * 1024


def _version() -> str:
    try:
        return version("engram")
    except PackageNotFoundError:
        return "dev"


def build_app(service: AgentService, security: GatewaySecurity, host: str = "127.0.0.1") -> FastAPI:
    """The app; `host` is where it listens, which sets the MCP endpoint's DNS-rebinding checks.
    Serve it with its lifespan on: the MCP endpoint's session manager runs for that long."""
    gate = Gate(security.keyring, security.rate, security.chat_streams)
    mcp_endpoint, mcp_sessions = mcp_server.build(service, host)
    app = FastAPI(
        title="Engram HTTP API",
        version=_version(),
        description="OpenAI-compatible Chat Completions and Responses over Engram's agents "
        "(model `agent:<agent id>`), and Engram's resources as JSON. Every call takes "
        "`Authorization: Bearer <API key>` when the engine has keys.",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lambda _: mcp_server.running(mcp_sessions),
    )
    errors.install(app)
    for module in (openai_chat, openai_responses, console_routes, resources):
        app.include_router(module.router(service, gate))
    app.include_router(a2a_server.router(service, gate, _version()))
    console_routes.install_pages(app)

    app.router.routes.append(Route(mcp_server.PATH, mcp_endpoint, include_in_schema=False))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def limit_of(path: str) -> int:
        if path.startswith(OPENAI_PATHS):
            return OPENAI_BODY_BYTES
        if path.startswith("/v1/agents/") and path.endswith("/messages"):
            return MESSAGE_BODY_BYTES
        return SMALL_REQUEST_BYTES

    app.add_middleware(GateMiddleware, gate=gate, limit_of=limit_of)
    return app

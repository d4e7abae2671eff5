"""The web console: its static files at `/` and `/console/`, and the two JSON routes it needs
beyond the resources: every pending approval across the caller's agents, history search and
retry.

    GET /                                  the console's page (no key: it asks for one)
    GET /console/{file}                    its scripts and style
    GET /v1/approvals                      the calls awaiting approval, over all the caller's agents
    GET /v1/agents/{id}/search?q=&page=    SearchHistory
    POST /v1/agents/{id}/retry             ControlAgent(retry): the last failed turn again
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

from engram.gateway.agent_service import AgentService
from engram.gateway.errors import GatewayError
from engram.http import calls
from engram.http.gate import Gate
from engram.http.resources import as_json
from engram.v1 import agent_pb2

STATIC = Path(__file__).resolve().parent / "console"

# No inline script or style, nothing from elsewhere: agent text can only ever be text.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
ENDED = frozenset({"deleted", "completed", "failed", "cancelled"})


def install_pages(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/console", StaticFiles(directory=STATIC), name="console")


def router(service: AgentService, gate: Gate) -> APIRouter:
    """The console's JSON routes; included before the resources' `/{agent_id}/{command}`."""
    api = APIRouter(prefix="/v1", tags=["Console"])

    @api.get("/approvals")
    async def approvals() -> dict[str, Any]:
        listed = await calls.call(service.ListAgents, agent_pb2.ListAgentsRequest(page_size=200))
        live = [a.agent_id for a in listed.agents if a.status not in ENDED]
        agents = await asyncio.gather(*(_agent(service, agent_id) for agent_id in live))
        waiting = [
            {"agent_id": agent.agent_id, "goal": agent.goal, **as_json(pending)}
            for agent in agents
            if agent is not None
            for pending in agent.pending_calls
            if pending.waiting_for == "approval"
        ]
        return {"data": waiting}

    @api.get("/agents/{agent_id}/search")
    async def search(agent_id: str, q: str = "", page: int = 0) -> dict[str, Any]:
        request = agent_pb2.SearchHistoryRequest(agent_id=agent_id, query=q, page=page)
        return as_json(await calls.call(service.SearchHistory, request))

    @api.post("/agents/{agent_id}/retry")
    async def retry(agent_id: str) -> dict[str, Any]:
        request = agent_pb2.ControlAgentRequest(agent_id=agent_id, retry=agent_pb2.Retry())
        return as_json(await calls.call(service.ControlAgent, request))

    return api


async def _agent(service: AgentService, agent_id: str) -> agent_pb2.Agent | None:
    """The agent, or None if it went away since it was listed."""
    try:
        return await calls.call(service.GetAgent, agent_pb2.GetAgentRequest(agent_id=agent_id))
    except GatewayError:
        return None

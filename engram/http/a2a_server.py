"""Each agent as an A2A server:

    GET  /a2a/{agent_id}/.well-known/agent-card.json   its card
    POST /a2a/{agent_id}                               JSON-RPC: SendMessage, SendStreamingMessage,
                                                       GetTask, CancelTask, SubscribeToTask (and
                                                       0.3's message/send, message/stream,
                                                       tasks/get, tasks/cancel, tasks/resubscribe)

The a2a-sdk parses and answers JSON-RPC; engram.http.a2a_requests answers each method through the
gateway's AgentService. Keys are the HTTP API's (the gate); an agent the caller may not see is a
404 on both routes, word for word as an unknown one.
"""

from __future__ import annotations

import logging

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import DefaultServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from engram.gateway.agent_service import AgentService
from engram.http import calls
from engram.http.a2a_card import agent_card
from engram.http.a2a_requests import AgentRequests
from engram.http.gate import Gate
from engram.http.naming import checked_agent_id
from engram.v1 import agent_pb2

# The SDK logs each client error (a malformed request, a wrong version) with a stack trace.
CLIENT_ERROR_LOGS = ("Failed to validate base JSON-RPC request", "Failed to parse request params")


class _ClientErrorsQuiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in CLIENT_ERROR_LOGS:
            return False
        return record.levelno != logging.WARNING


def quiet_sdk_logs() -> None:
    for name in (
        "a2a.server.routes.jsonrpc_dispatcher",
        "a2a.compat.v0_3.jsonrpc_adapter",
        "a2a.utils.version_validator",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ClientErrorsQuiet) for f in logger.filters):
            logger.addFilter(_ClientErrorsQuiet())


class _AgentContext(DefaultServerCallContextBuilder):
    """The call context names the route's agent."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state["agent_id"] = request.path_params["agent_id"]
        return context


def router(service: AgentService, gate: Gate, version: str) -> APIRouter:
    api = APIRouter(prefix="/a2a", tags=["A2A"])
    dispatcher = JsonRpcDispatcher(
        AgentRequests(service, gate), context_builder=_AgentContext(), enable_v0_3_compat=True
    )
    quiet_sdk_logs()

    async def visible(agent_id: str) -> agent_pb2.Agent:
        """The caller's agent; 404 for one it may not see, as for one that does not exist."""
        request = agent_pb2.GetAgentRequest(agent_id=checked_agent_id(agent_id))
        return await calls.call(service.GetAgent, request)

    @api.get("/{agent_id}/.well-known/agent-card.json")
    async def card(agent_id: str, request: Request) -> JSONResponse:
        agent = await visible(agent_id)
        url = str(request.url_for("a2a_rpc", agent_id=agent.agent_id))
        return JSONResponse(agent_card_to_dict(agent_card(agent, url, version)))

    @api.post("/{agent_id}", name="a2a_rpc", response_model=None)
    async def rpc(agent_id: str, request: Request) -> Response:
        agent = await visible(agent_id)
        request.scope["path_params"]["agent_id"] = agent.agent_id
        return await dispatcher.handle_requests(request)

    return api

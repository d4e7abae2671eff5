"""An MCP server at `/mcp` (streamable HTTP): an MCP client lists, creates, asks and approves
the caller's agents through the same AgentService methods as the rest of the HTTP API.

Every request has passed the gate (engram.http.gate), which put the caller's Principal in the
request's scope. The SDK runs tools in tasks of its own, outside the request's context, so each
tool sets that Principal itself before calling the service: a call never runs as the open
principal by accident.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from engram.auth.principal import Principal, set_current
from engram.gateway.agent_service import AgentService
from engram.http import calls, errors
from engram.http.gate import PRINCIPAL_STATE
from engram.http.naming import message_id
from engram.http.reply_text import ReplyText
from engram.http.resources import as_json
from engram.v1 import agent_pb2
from engram.vocabulary import Notice

PATH = "/mcp"
T = TypeVar("T")


def security_for(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection for a loopback host (a browser's page must not reach an engine
    on the caller's machine); on another host the Host is whatever name the engine is reached
    by, and every call needs an API key anyway."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


async def _as_caller(ctx: Context, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` as the request's caller; any failure as a tool error, in the words the HTTP
    API would have used (another tenant's agent is not found, as an unknown one is)."""
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state", {})
    principal = state.get(PRINCIPAL_STATE)
    if not isinstance(principal, Principal):
        raise ToolError("not authenticated: send Authorization: Bearer <API key>")
    set_current(principal)
    try:
        return await work()
    except ToolError:
        raise
    except Exception as err:
        raise ToolError(errors.from_exception(err).message) from None


def build(service: AgentService, host: str) -> tuple[ASGIApp, StreamableHTTPSessionManager]:
    """The `/mcp` endpoint and its session manager, whose `run()` the app's lifespan holds."""
    server: MCPServer[Any] = MCPServer(
        "engram",
        instructions="Engram's durable agents: list, create and ask them; approve their calls.",
    )

    @server.tool()
    async def list_agents(ctx: Context) -> list[dict[str, Any]]:
        """The caller's agents: id, goal, model and status."""

        async def work() -> list[dict[str, Any]]:
            listed: list[dict[str, Any]] = []
            token = ""
            while True:
                request = agent_pb2.ListAgentsRequest(page_size=1000, page_token=token)
                page = await calls.call(service.ListAgents, request)
                listed.extend(
                    {"agent_id": a.agent_id, "goal": a.goal, "model": a.model, "status": a.status}
                    for a in page.agents
                )
                token = page.next_page_token
                if not token:
                    return listed

        return await _as_caller(ctx, work)

    @server.tool()
    async def create_agent(
        goal: str,
        ctx: Context,
        model: str = "",
        system_prompt: str = "",
        tools: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create an agent with this goal (and model, else the engine's default), with the
        engine's tools named in `tools`."""

        async def work() -> dict[str, Any]:
            request = agent_pb2.CreateAgentRequest(
                goal=goal,
                model=model,
                system_prompt=system_prompt,
                tools=[agent_pb2.Tool(name=name) for name in tools or ()],
            )
            created = await calls.call(service.CreateAgent, request)
            agent = created.agent
            return {"agent_id": created.agent_id, "model": agent.model, "status": agent.status}

        return await _as_caller(ctx, work)

    @server.tool()
    async def ask_agent(agent_id: str, message: str, ctx: Context) -> str:
        """Send the agent one message as a new turn and return its reply. The reply streams as
        progress notifications while it is written. If the turn stops for an approval, says so
        and lists the calls waiting (decide them with `approve`)."""

        async def work() -> str:
            turn_id = message_id(None)
            reply = ReplyText(turn_id)
            replies = calls.chat(service, agent_id, message, turn_id)
            try:
                async for sent in replies:
                    delta = reply.add(sent)
                    if delta:
                        await ctx.report_progress(len(reply.shown), message=delta)
                    if sent.WhichOneof("payload") == "status" and (
                        sent.status.status == Notice.AWAITING_APPROVAL
                    ):
                        return await _awaiting(service, agent_id)
            finally:
                await replies.aclose()
            if reply.error is not None:
                raise ToolError(f"the agent's turn failed: {reply.error[1]}")
            if reply.final is None:
                raise ToolError("the turn ended without an answer; try again")
            return reply.final

        return await _as_caller(ctx, work)

    @server.tool()
    async def approve(
        agent_id: str, call_id: str, approved: bool, ctx: Context, reason: str = ""
    ) -> dict[str, Any]:
        """Approve (approved=true) or deny a tool call that waits for a person."""

        async def work() -> dict[str, Any]:
            decision = agent_pb2.Approval(call_id=call_id, approved=approved, reason=reason)
            request = agent_pb2.ControlAgentRequest(agent_id=agent_id, approval=decision)
            return as_json(await calls.call(service.ControlAgent, request))

        return await _as_caller(ctx, work)

    server.streamable_http_app(
        streamable_http_path=PATH, stateless_http=True, transport_security=security_for(host)
    )
    manager = server.session_manager
    return StreamableHTTPASGIApp(manager), manager


async def _awaiting(service: AgentService, agent_id: str) -> str:
    agent = await calls.call(service.GetAgent, agent_pb2.GetAgentRequest(agent_id=agent_id))
    waiting = [
        {"call_id": c.call_id, "tool_name": c.tool_name, "arguments": c.input_json}
        for c in agent.pending_calls
        if c.waiting_for == "approval"
    ]
    return "The turn waits for approval of these calls (decide each with `approve`): " + (
        json.dumps(waiting)
    )


@asynccontextmanager
async def running(manager: StreamableHTTPSessionManager) -> AsyncIterator[None]:
    async with manager.run():
        yield

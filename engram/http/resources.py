"""Engram's own resources as plain JSON, mirroring AgentService method for method.

Bodies and replies are the gRPC messages in protobuf's JSON mapping (field names as in
proto/engram/v1/agent.proto), so the two APIs take and give the same things.

    POST   /v1/agents                              CreateAgent (body: CreateAgentRequest)
    GET    /v1/agents?status=&page_size=&page_token=   ListAgents
    GET    /v1/agents/{id}                         GetAgent
    DELETE /v1/agents/{id}?force=                  DeleteAgent
    POST   /v1/agents/{id}/messages                Chat, one message (and its attachments), the
                                                   turn's messages back
    GET    /v1/agents/{id}/events?after=&include_history=  Replay, as server-sent events
    GET    /v1/agents/{id}/history                 GetHistory
    GET    /v1/agents/{id}/approvals               the tool calls awaiting a decision
    POST   /v1/agents/{id}/approvals/{call}/approve|deny   ControlAgent(approval)
    POST   /v1/agents/{id}/pause|resume|cancel     ControlAgent
    POST   /v1/agents/{id}/fork                    ForkAgent (body: {"at_sequence": N})
    POST   /v1/agents/{id}/rewind                  RewindAgent (body: {"to_sequence": N})
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Header
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import Message

from engram.gateway.agent_service import AgentService
from engram.http import calls, sse
from engram.http.errors import ApiError, invalid
from engram.http.gate import Gate
from engram.http.naming import message_id
from engram.v1 import agent_pb2

M = TypeVar("M", bound=Message)


def parsed(body: dict[str, Any], message: M, where: str = "the body") -> M:
    try:
        ParseDict(body, message)
    except ParseError as err:
        raise invalid(f"{where} is not valid: {err}") from None
    return message


def as_json(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def router(service: AgentService, gate: Gate) -> APIRouter:
    api = APIRouter(prefix="/v1/agents", tags=["Agents"])

    @api.post("", status_code=201)
    async def create_agent(body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        request = parsed(body, agent_pb2.CreateAgentRequest())
        return as_json(await calls.call(service.CreateAgent, request))

    @api.get("")
    async def list_agents(
        status: str = "", page_size: int = 0, page_token: str = ""
    ) -> dict[str, Any]:
        request = agent_pb2.ListAgentsRequest(
            status_filter=status, page_size=page_size, page_token=page_token
        )
        return as_json(await calls.call(service.ListAgents, request))

    @api.get("/{agent_id}")
    async def get_agent(agent_id: str) -> dict[str, Any]:
        request = agent_pb2.GetAgentRequest(agent_id=agent_id)
        return as_json(await calls.call(service.GetAgent, request))

    @api.delete("/{agent_id}")
    async def delete_agent(agent_id: str, force: bool = False) -> dict[str, Any]:
        request = agent_pb2.DeleteAgentRequest(agent_id=agent_id, force=force)
        await calls.call(service.DeleteAgent, request)
        return {"agent_id": agent_id, "deleted": True}

    @api.post("/{agent_id}/messages")
    async def send_message(
        agent_id: str,
        body: Annotated[dict[str, Any], Body(examples=[{"content": "Hello"}])],
        idempotency_key: str | None = Header(default=None),
    ) -> dict[str, Any]:
        content = body.get("content", "")
        files = parsed({"attachments": body.get("attachments") or []}, agent_pb2.UserInput())
        if not isinstance(content, str) or not (content or files.attachments):
            raise invalid("content (a string) is required, unless the message has attachments")
        turn_id = message_id(body.get("message_id") or idempotency_key)
        replies = calls.chat(service, agent_id, content, turn_id, files.attachments)
        messages = [as_json(m) async for m in replies]
        return {"message_id": turn_id, "messages": messages}

    @api.get("/{agent_id}/events", response_model=None)
    async def events(
        agent_id: str,
        after: int = 0,
        include_history: bool = False,
        last_event_id: str | None = Header(default=None),
    ) -> Any:
        if last_event_id:
            if not last_event_id.strip().isdigit():
                raise invalid("Last-Event-ID is not a sequence id")
            after, include_history = int(last_event_id), False
        guard = gate.open_stream()
        try:
            replies = await sse.opened(calls.replay(service, agent_id, after, include_history))
        except BaseException:
            guard.close()
            raise
        return sse.stream(_event_frames(replies), _error_frame, guard)

    @api.get("/{agent_id}/history")
    async def history(agent_id: str) -> dict[str, Any]:
        request = agent_pb2.GetHistoryRequest(agent_id=agent_id)
        return as_json(await calls.call(service.GetHistory, request))

    @api.get("/{agent_id}/approvals")
    async def approvals(agent_id: str) -> dict[str, Any]:
        agent = await calls.call(service.GetAgent, agent_pb2.GetAgentRequest(agent_id=agent_id))
        waiting = [as_json(c) for c in agent.pending_calls if c.waiting_for == "approval"]
        return {"data": waiting}

    @api.post("/{agent_id}/approvals/{call_id}/{decision}")
    async def decide(
        agent_id: str,
        call_id: str,
        decision: Literal["approve", "deny"],
        body: Annotated[dict[str, Any] | None, Body()] = None,
    ) -> dict[str, Any]:
        approval = parsed(body or {}, agent_pb2.Approval())
        approval.call_id, approval.approved = call_id, decision == "approve"
        request = agent_pb2.ControlAgentRequest(agent_id=agent_id, approval=approval)
        return as_json(await calls.call(service.ControlAgent, request))

    @api.post("/{agent_id}/fork", status_code=201)
    async def fork(
        agent_id: str, body: Annotated[dict[str, Any] | None, Body()] = None
    ) -> dict[str, Any]:
        request = parsed(body or {}, agent_pb2.ForkAgentRequest())
        request.agent_id = agent_id
        return as_json(await calls.call(service.ForkAgent, request))

    @api.post("/{agent_id}/rewind")
    async def rewind(
        agent_id: str, body: Annotated[dict[str, Any] | None, Body()] = None
    ) -> dict[str, Any]:
        request = parsed(body or {}, agent_pb2.RewindAgentRequest())
        request.agent_id = agent_id
        return as_json(await calls.call(service.RewindAgent, request))

    @api.post("/{agent_id}/{command}")
    async def control(
        agent_id: str, command: Literal["pause", "resume", "cancel"]
    ) -> dict[str, Any]:
        request = agent_pb2.ControlAgentRequest(agent_id=agent_id)
        getattr(request, command).SetInParent()
        return as_json(await calls.call(service.ControlAgent, request))

    return api


async def _event_frames(replies: AsyncIterator[agent_pb2.ServerMessage]) -> AsyncIterator[bytes]:
    async for message in replies:
        kind = message.WhichOneof("payload") or "message"
        yield sse.frame(as_json(message), event=kind, event_id=str(message.sequence_id))


def _error_frame(err: ApiError) -> bytes:
    return sse.frame(err.body(), event="error")

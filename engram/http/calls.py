"""Calling the gateway's AgentService from HTTP: the very servicer methods gRPC calls.

A servicer method reports failure through its context's `abort`; here that raises the
GatewayError the gRPC client would have seen as a status, which engram.http.errors turns into
an HTTP status. The caller's Principal is already set (engram.http.gate).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import grpc

from engram.gateway.agent_service import AgentService
from engram.gateway.errors import GatewayError
from engram.v1 import agent_pb2

Reply = TypeVar("Reply")


class HttpContext:
    """The part of grpc.aio.ServicerContext the servicer uses: `abort`."""

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: object) -> NoReturn:
        raise GatewayError(code, details)


async def call(method: Callable[[Any, Any], Awaitable[Reply]], request: Any) -> Reply:
    """One unary call, e.g. `await call(service.GetAgent, GetAgentRequest(...))`."""
    return await method(request, HttpContext())


def chat(
    service: AgentService,
    agent_id: str,
    content: str,
    message_id: str,
    attachments: Sequence[agent_pb2.Attachment] = (),
) -> AsyncGenerator[agent_pb2.ServerMessage, None]:
    """One user message sent on its own Chat stream: the turn's messages, its user message
    (once durably recorded) first and its answer (or error) last."""

    async def requests() -> AsyncIterator[agent_pb2.ClientMessage]:
        yield agent_pb2.ClientMessage(
            agent_id=agent_id,
            message_id=message_id,
            user_input=agent_pb2.UserInput(content=content, attachments=attachments),
        )

    replies: AsyncGenerator[agent_pb2.ServerMessage, None] = service.Chat(requests(), HttpContext())  # type: ignore[arg-type, assignment]
    return replies


def replay(
    service: AgentService, agent_id: str, after: int, include_history: bool = False
) -> AsyncGenerator[agent_pb2.ServerMessage, None]:
    """Replay: the agent's messages after sequence id `after`, then the turn in progress live,
    each sequence id once."""
    request = agent_pb2.ReplayRequest(
        agent_id=agent_id, from_sequence=after, include_history=include_history
    )
    replies: AsyncGenerator[agent_pb2.ServerMessage, None] = service.Replay(request, HttpContext())  # type: ignore[arg-type, assignment]
    return replies

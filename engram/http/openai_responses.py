"""`POST /v1/responses` and `GET /v1/responses/{id}`, as OpenAI's clients call them.

The model is `agent:<agent id>`, or it is the agent of `previous_response_id`: an agent keeps one
conversation, so naming any earlier response of it continues it. `input` is the new user input
(a string, or items of which the last must be the user's; earlier items are ignored, as the
agent remembers them). `instructions`, tools and sampling options are the agent's own settings
and are ignored.

With `stream: true` the reply is Responses stream events; each carries the SSE id
`<sequence id>.<n>` (engram.http.response_events). A client that lost the stream resumes it
with `GET /v1/responses/{id}?stream=true` and the header `Last-Event-ID` (what a browser's
EventSource sends by itself) or the query `starting_after=<sequence_number>` (what OpenAI's
client sends): the events after that one, each exactly once, from the agent's durable record
and then live, like the gRPC Replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, ConfigDict

from engram.gateway.agent_service import AgentService
from engram.http import calls, sse
from engram.http.errors import ApiError, invalid
from engram.http.gate import Gate
from engram.http.naming import ResponseId, agent_of_model, message_id
from engram.http.openai_chat import text_of
from engram.http.response_events import Event, ResponseEvents, parse_event_id
from engram.messages import ends_turn
from engram.v1 import agent_pb2

# How long a resumed stream waits before asking again for a turn still queued behind another.
QUEUED_POLL_SECONDS = 0.2


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[dict[str, Any]]
    previous_response_id: str | None = None
    stream: bool = False


def new_input(value: str | list[dict[str, Any]]) -> str:
    if isinstance(value, str):
        return value
    if not value:
        raise invalid("input is empty")
    last = value[-1]
    if last.get("role") != "user" or last.get("type", "message") != "message":
        raise invalid(
            "the last input item must be the user's message: it is what the agent is sent"
        )
    return text_of(last.get("content"), "input[-1].content")


def agent_of(body: ResponsesRequest) -> str:
    from_model = agent_of_model(body.model) if body.model else None
    if body.previous_response_id is None:
        if from_model is None:
            raise invalid("model is required: 'agent:<agent id>' (or a previous_response_id)")
        return from_model
    previous = ResponseId.parse(body.previous_response_id).agent_id
    if from_model is not None and from_model != previous:
        raise invalid("previous_response_id is a response of another agent than model names")
    return previous


def router(service: AgentService, gate: Gate) -> APIRouter:
    api = APIRouter(tags=["OpenAI compatible"])

    @api.post("/v1/responses", response_model=None)
    async def create(
        body: ResponsesRequest, idempotency_key: str | None = Header(default=None)
    ) -> Any:
        agent_id = agent_of(body)
        content = new_input(body.input)
        turn_id = message_id(idempotency_key)
        messages = calls.chat(service, agent_id, content, turn_id)
        if not body.stream:
            return await _whole(messages)
        guard = gate.open_stream()
        try:
            opened = await sse.opened(messages)
        except BaseException:
            guard.close()
            raise
        return sse.stream(_frames(_events(opened), None), _error_frame, guard)

    @api.get("/v1/responses/{response_id}", response_model=None)
    async def retrieve(
        response_id: str,
        stream: bool = False,
        starting_after: int | None = Query(default=None, ge=-1),
        last_event_id: str | None = Header(default=None),
    ) -> Any:
        rid = ResponseId.parse(response_id)
        if not stream:
            return await _whole(turn_messages(service, rid))
        after: tuple[int, int] | int | None = starting_after
        if last_event_id:
            try:
                after = parse_event_id(last_event_id)
            except ValueError:
                raise invalid("Last-Event-ID is not an id this stream sent") from None
        guard = gate.open_stream()
        try:
            opened = await sse.opened(turn_messages(service, rid))
        except BaseException:
            guard.close()
            raise
        return sse.stream(_frames(_events(opened), after), _error_frame, guard)

    return api


async def _whole(messages: AsyncGenerator[agent_pb2.ServerMessage, None]) -> dict[str, Any]:
    building = ResponseEvents()
    async with aclosing(messages):
        async for message in messages:
            building.add(message)
            if building.done:
                break
    if building.response_id is None:
        raise ApiError(503, "the turn ended without an answer; try again", "server_error")
    return building.body()


async def _events(messages: AsyncGenerator[agent_pb2.ServerMessage, None]) -> AsyncIterator[Event]:
    building = ResponseEvents()
    async with aclosing(messages):
        async for message in messages:
            for event in building.add(message):
                yield event
            if building.done:
                return


async def _frames(
    events: AsyncIterator[Event], after: tuple[int, int] | int | None
) -> AsyncIterator[bytes]:
    """SSE frames of the events after `after`: a Last-Event-ID's (sequence id, n), or a
    sequence_number."""
    async for event in events:
        if isinstance(after, tuple) and (event.sequence_id, event.n) <= after:
            continue
        if isinstance(after, int) and event.number <= after:
            continue
        yield sse.frame(event.data, event=event.data["type"], event_id=event.event_id)


def _error_frame(err: ApiError) -> bytes:
    return sse.frame(
        {"type": "error", "code": err.code, "message": err.message, "param": None},
        event="error",
    )


async def turn_messages(
    service: AgentService, rid: ResponseId
) -> AsyncGenerator[agent_pb2.ServerMessage, None]:
    """The turn's messages from the agent's record (and live while it lasts), its user message
    first: Replay from just before it, until the turn's last message. 404 unless the message at
    its sequence id is that turn's user message."""
    after = rid.user_sequence - 1
    found = False
    while True:
        async with aclosing(calls.replay(service, rid.agent_id, after)) as messages:
            async for message in messages:
                if not found:
                    if (
                        message.sequence_id != rid.user_sequence
                        or message.message_id != rid.message_id
                        or message.WhichOneof("payload") != "user_message"
                    ):
                        raise ApiError(404, f"response {rid} not found", "not_found_error")
                    found = True
                after = message.sequence_id
                yield message
                if message.message_id == rid.message_id and ends_turn(message):
                    return
        if not found:
            raise ApiError(404, f"response {rid} not found", "not_found_error")
        # Its turn waits behind another: the Replay followed that one to its end.
        await asyncio.sleep(QUEUED_POLL_SECONDS)

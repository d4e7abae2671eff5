"""`POST /v1/chat/completions` and `GET /v1/models`, as OpenAI's clients call them.

The model is `agent:<agent id>`. An agent keeps its own conversation, so only the request's last
message, which must be the user's, is new: it is sent to the agent as one turn, and the earlier
messages (which OpenAI's clients resend every time) are ignored. Sampling options (temperature,
max_tokens, tools...) are the agent's own settings and are ignored too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from engram.gateway.agent_service import AgentService
from engram.http import calls, sse
from engram.http.errors import ApiError, invalid
from engram.http.gate import Gate
from engram.http.naming import agent_of_model, checked_agent_id, message_id, model_name
from engram.http.reply_text import ReplyText
from engram.v1 import agent_pb2

# How many of the caller's agents GET /v1/models lists at most.
MAX_MODELS = 10_000


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="agent:<agent id>")
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The new input: the last message, which must be the user's, as text."""
    last = messages[-1]
    if last.get("role") != "user":
        raise invalid("the last message must be the user's: it is what the agent is sent")
    return text_of(last.get("content"), "messages[-1].content")


def text_of(content: Any, where: str) -> str:
    """A message's content (a string, or a list of text parts) as one string."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                raise invalid(f"{where}: only text parts are supported")
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{where}: a text part needs a string 'text'")
            texts.append(text)
        return "".join(texts)
    raise invalid(f"{where} must be a string or a list of text parts")


def router(service: AgentService, gate: Gate) -> APIRouter:
    api = APIRouter(tags=["OpenAI compatible"])

    @api.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatRequest, idempotency_key: str | None = Header(default=None)
    ) -> Any:
        agent_id = agent_of_model(body.model)
        content = last_user_text(body.messages)
        turn_id = message_id(idempotency_key)
        completion = Completion(body.model, turn_id)
        if not body.stream:
            reply = ReplyText(turn_id)
            async for message in calls.chat(service, agent_id, content, turn_id):
                reply.add(message)
            return completion.whole(reply)
        guard = gate.open_stream()
        try:
            messages = await sse.opened(calls.chat(service, agent_id, content, turn_id))
        except BaseException:
            guard.close()
            raise
        return sse.stream(completion.chunks(messages), _error_frame, guard)

    @api.get("/v1/models")
    async def models() -> dict[str, Any]:
        listed: list[dict[str, Any]] = []
        token = ""
        while len(listed) < MAX_MODELS:
            page = await calls.call(
                service.ListAgents,
                agent_pb2.ListAgentsRequest(page_size=1000, page_token=token),
            )
            listed.extend(_model(agent) for agent in page.agents)
            token = page.next_page_token
            if not token:
                break
        return {"object": "list", "data": listed}

    @api.get("/v1/models/{model}")
    async def model(model: str) -> dict[str, Any]:
        agent_id = checked_agent_id(model.removeprefix("agent:"))
        agent = await calls.call(service.GetAgent, agent_pb2.GetAgentRequest(agent_id=agent_id))
        return _model(agent)

    return api


def _model(agent: agent_pb2.Agent) -> dict[str, Any]:
    return {
        "id": model_name(agent.agent_id),
        "object": "model",
        "created": agent.created_at.seconds,
        "owned_by": "engram",
    }


def _error_frame(err: ApiError) -> bytes:
    # OpenAI's clients raise an APIError for a `data:` line holding an `error`.
    return sse.frame(err.body())


class Completion:
    """One chat completion's wire shapes."""

    def __init__(self, model: str, turn_id: str) -> None:
        self.model = model
        self.id = f"chatcmpl-{turn_id}"
        self.created = int(time.time())

    def whole(self, reply: ReplyText) -> dict[str, Any]:
        _raise_failure(reply)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.final, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse.frame(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
            }
        )

    async def chunks(
        self, messages: AsyncIterator[agent_pb2.ServerMessage]
    ) -> AsyncIterator[bytes]:
        reply = ReplyText(self.id.removeprefix("chatcmpl-"))
        yield self.chunk({"role": "assistant", "content": ""})
        async for message in messages:
            delta = reply.add(message)
            if delta:
                yield self.chunk({"content": delta})
        _raise_failure(reply)
        yield self.chunk({}, "stop")
        yield sse.frame("[DONE]")


def _raise_failure(reply: ReplyText) -> None:
    if reply.error is not None:
        code, message = reply.error
        raise ApiError(502, f"the agent's turn failed: {message}", "server_error", code)
    if reply.joined:
        raise ApiError(
            409,
            "this message was answered together with another one sent at the same time: "
            "the answer is in that request's reply",
            "conflict_error",
            "joined",
        )
    if reply.final is None:
        raise ApiError(503, "the turn ended without an answer; try again", "server_error")

"""The names the OpenAI-compatible routes give Engram's things.

A model is `agent:<agent id>`. A response id is `resp_<agent id>_<sequence id of the turn's user
message>_<message id>`: it names the agent (`previous_response_id` continues that agent) and
where its turn starts in the agent's history, so the response can be read back and its stream
resumed from the durable record alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from engram.gateway import validation
from engram.gateway.errors import GatewayError
from engram.http.errors import ApiError, invalid

MODEL_PREFIX = "agent:"
RESPONSE_PREFIX = "resp_"


def model_name(agent_id: str) -> str:
    return MODEL_PREFIX + agent_id


def agent_of_model(model: str) -> str:
    """The agent a `model` names; 400 unless it is `agent:<agent id>`."""
    if not model.startswith(MODEL_PREFIX):
        raise invalid(
            f"model {model[:80]!r} is not an agent: use model 'agent:<agent id>' "
            "(GET /v1/models lists yours)",
            "model_not_found",
        )
    return checked_agent_id(model.removeprefix(MODEL_PREFIX))


def checked_agent_id(value: str) -> str:
    try:
        return validation.agent_id(value)
    except GatewayError as err:
        raise invalid(err.message) from None


def message_id(idempotency_key: str | None) -> str:
    """The turn's message id: the client's Idempotency-Key (a retry then returns the same turn
    rather than starting another), else a new one."""
    if not idempotency_key:
        return uuid.uuid4().hex
    try:
        return validation.message_id(idempotency_key)
    except GatewayError as err:
        raise invalid(f"Idempotency-Key: {err.message}") from None


@dataclass(frozen=True)
class ResponseId:
    agent_id: str
    user_sequence: int
    message_id: str

    def __str__(self) -> str:
        return f"{RESPONSE_PREFIX}{self.agent_id}_{self.user_sequence}_{self.message_id}"

    @classmethod
    def parse(cls, text: str) -> ResponseId:
        """404 for anything that is not a response id this API made."""
        parts = text.removeprefix(RESPONSE_PREFIX).split("_", 2)
        unknown = ApiError(404, f"response {text[:120]!r} not found", "not_found_error")
        if not text.startswith(RESPONSE_PREFIX) or len(parts) != 3:
            raise unknown
        agent, sequence, message = parts
        try:
            agent_id = validation.agent_id(agent)
            validation.message_id(message)
            user_sequence = int(sequence)
        except (GatewayError, ValueError):
            raise unknown from None
        if user_sequence < 1 or not sequence.isdigit():
            raise unknown
        return cls(agent_id, user_sequence, message)

"""Checks on client input, so bad requests fail fast with INVALID_ARGUMENT and change nothing."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta

from google.protobuf.json_format import MessageToDict, ParseDict, ParseError

from engram.gateway import edit_patch
from engram.gateway.edit_patch import MAX_FIELD_BYTES as MAX_FIELD_BYTES
from engram.gateway.errors import invalid
from engram.v1 import agent_pb2
from engram.vocabulary import AgentStatus, DoubleTexting, Overlap
from engram.workflows.types import EditInput

MESSAGE_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
MAX_METADATA_ENTRIES = 64
# Not a status: the agents working autonomously (working or sleeping).
AUTONOMOUS = "autonomous"
# needs_attention is read from Temporal by GetAgent, not kept where ListAgents could filter on it.
STATUSES = (*(s for s in AgentStatus if s != AgentStatus.NEEDS_ATTENTION), AUTONOMOUS)
# A schedule's name is part of its Temporal id and of its runs' message ids.
SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_CRON_EXPRESSIONS = 16
MAX_CRON_CHARS = 256
MIN_EVERY = timedelta(seconds=1)


def agent_id(value: str) -> str:
    if not value:
        raise invalid("agent_id is required")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise invalid(f"agent_id {value[:80]!r} is not a valid agent id (a UUID)") from None
    if str(parsed) != value.lower():
        raise invalid(f"agent_id {value[:80]!r} is not a valid agent id (a UUID)")
    return value.lower()


def message_id(value: str) -> str:
    if not MESSAGE_ID.match(value):
        raise invalid("message_id must be 1-128 characters of letters, digits and ._:@-")
    return value


def content(value: str, limit: int, has_attachments: bool = False) -> str:
    if not value.strip() and not has_attachments:
        raise invalid("user_input.content is empty")
    size = len(value.encode())
    if size > limit:
        raise invalid(f"user_input.content is {size} bytes; the limit is {limit}")
    return value


def create_request(req: agent_pb2.CreateAgentRequest, default_model: str) -> str:
    """Check a CreateAgentRequest; returns the model to use."""
    for name in ("goal", "system_prompt"):
        if len(getattr(req, name).encode()) > MAX_FIELD_BYTES:
            raise invalid(f"{name} is longer than {MAX_FIELD_BYTES} bytes")
    if len(req.metadata) > MAX_METADATA_ENTRIES:
        raise invalid(f"at most {MAX_METADATA_ENTRIES} metadata entries")
    model = req.model.strip() or default_model
    if not model:
        raise invalid("model is required (no default model is configured)")
    config = req.config
    if not 0 <= config.temperature <= 2:
        raise invalid("config.temperature must be between 0 and 2")
    if (
        config.max_context_tokens < 0
        or config.max_steps < 0
        or config.max_run_tokens < 0
        or not config.max_cost_usd >= 0  # NaN too
    ):
        raise invalid("config limits must not be negative")
    if config.max_duration.ToNanoseconds() < 0:
        raise invalid("config.max_duration must not be negative")
    if config.autonomous and not req.goal.strip():
        raise invalid("an autonomous agent needs a goal to work on")
    if config.double_texting and config.double_texting not in set(DoubleTexting):
        raise invalid(f"config.double_texting must be one of {', '.join(DoubleTexting)}")
    fallbacks = config.fallback_models
    if len(fallbacks) > edit_patch.MAX_FALLBACK_MODELS or not all(
        0 < len(m) <= edit_patch.MAX_MODEL_CHARS for m in fallbacks
    ):
        raise invalid(f"config.fallback_models must be {edit_patch.MUST_BE_FALLBACKS}")
    names = [t.name for t in req.tools]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise invalid("every tool needs a unique, non-empty name")
    return model


def status_filter(value: str) -> str:
    if value and value not in STATUSES:
        raise invalid(f"status_filter must be one of {', '.join(STATUSES)} (or empty)")
    return value


def edit(request: agent_pb2.Edit) -> tuple[EditInput, list[agent_pb2.Tool] | None]:
    """An Edit's patch (schema: `edit_patch.EditPatch`) as the agent's EditInput, and the tools it
    names (for the gateway to resolve against the workers' catalog), if it names any."""
    try:
        fields = MessageToDict(request.patch)
    except ValueError as err:  # a number JSON cannot hold: Infinity, NaN
        raise invalid(f"edit.patch is not JSON: {err}") from None
    try:
        patch = edit_patch.parse(fields)
    except ValueError as err:
        raise invalid(str(err)) from None
    tools = None
    if patch.tools is not None:
        try:
            tools = [
                agent_pb2.Tool(name=t) if isinstance(t, str) else ParseDict(t, agent_pb2.Tool())
                for t in patch.tools
            ]
        except ParseError as err:
            raise invalid(f"edit.patch.tools: {err}") from None
    return EditInput(
        goal=patch.goal,
        system_prompt=patch.system_prompt,
        temperature=patch.temperature,
        max_context_tokens=patch.max_context_tokens,
        memory={name: content or "" for name, content in (patch.memory or {}).items()},
        approvals=dict(patch.approvals or {}),
        double_texting=patch.double_texting,
        fallback_models=patch.fallback_models,
        description=request.description[:1000],
        max_cost_usd=patch.max_cost_usd,
    ), tools


@dataclass(frozen=True)
class ScheduleRequest:
    """A CreateScheduleRequest, checked. Cron syntax and time zones are Temporal's to check."""

    agent_id: str
    name: str
    cron: list[str]
    every: timedelta | None
    instructions: str
    overlap: Overlap
    timezone: str


def schedule_name(value: str) -> str:
    if not value:
        raise invalid("name is required")
    if not SCHEDULE_NAME.match(value):
        raise invalid(
            f"name {value[:80]!r} must be 1-64 letters, digits and ._- (starting with a letter or "
            "digit)"
        )
    return value


def create_schedule(req: agent_pb2.CreateScheduleRequest) -> ScheduleRequest:
    agent, name = agent_id(req.agent_id), schedule_name(req.name)
    cron = [c.strip() for c in req.cron]
    if any(not c for c in cron):
        raise invalid("cron expressions must not be empty")
    if len(cron) > MAX_CRON_EXPRESSIONS:
        raise invalid(f"at most {MAX_CRON_EXPRESSIONS} cron expressions")
    if any(len(c) > MAX_CRON_CHARS for c in cron):
        raise invalid(f"a cron expression is at most {MAX_CRON_CHARS} characters")
    every = req.every.ToTimedelta() if req.HasField("every") else None
    if every is not None and every < MIN_EVERY:
        raise invalid(f"every must be at least 1 second (it is {every.total_seconds():g} s)")
    if not cron and every is None:
        raise invalid("a schedule needs cron expressions or an interval (every)")
    overlaps = ", ".join(Overlap)
    if req.overlap and req.overlap not in set(Overlap):
        raise invalid(f"overlap must be one of {overlaps} (or empty, for skip)")
    if len(req.instructions.encode()) > MAX_FIELD_BYTES:
        raise invalid(f"instructions is longer than {MAX_FIELD_BYTES} bytes")
    return ScheduleRequest(
        agent_id=agent,
        name=name,
        cron=cron,
        every=every,
        instructions=req.instructions,
        overlap=Overlap(req.overlap or Overlap.SKIP),
        timezone=req.timezone.strip(),
    )

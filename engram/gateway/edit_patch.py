"""The schema of an Edit's patch: what a client may change about an agent, and how it is spelled.

The patch is a protobuf Struct, i.e. JSON: numbers arrive as doubles, so a whole number is
accepted where an integer is due; otherwise types are strict (a string is not a number, true is
not 1). A field that is present must hold a value: null is only a memory note's "delete me".
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

# The limit on a goal or system prompt, in an Edit and at CreateAgent.
MAX_FIELD_BYTES = 64 * 1024
MAX_CONTEXT_TOKENS = 2**31 - 1
# A chain of fallback models, and each model's name.
MAX_FALLBACK_MODELS = 8
MAX_MODEL_CHARS = 256
MUST_BE_FALLBACKS = f"a list of at most {MAX_FALLBACK_MODELS} model names, none empty"


def _at_most_max_field_bytes(value: str) -> str:
    if len(value.encode()) > MAX_FIELD_BYTES:
        raise ValueError(f"longer than {MAX_FIELD_BYTES} bytes")
    return value


Text = Annotated[str, AfterValidator(_at_most_max_field_bytes)]


class EditPatch(BaseModel):
    """`Edit.patch`: every field optional, at least one present, nothing else allowed."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    goal: Text | None = None
    system_prompt: Text | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_context_tokens: Annotated[int, Field(ge=0, le=MAX_CONTEXT_TOKENS)] | None = None
    # Note name -> new content; "" or null deletes the note.
    memory: dict[str, str | None] | None = None
    # The agent's whole new set of tools, as in CreateAgent.tools: a bare name, or a Tool object.
    tools: list[str | dict[str, Any]] | None = None
    # Tool name -> its approval policy on this agent from now on.
    approvals: dict[str, Literal["always", "never", "ask"]] | None = None
    # What becomes of a message sent while the agent works (AgentConfig.double_texting).
    double_texting: Literal["queue", "steer", "interrupt", "reject"] | None = None
    # The models tried in order when the agent's model fails (AgentConfig.fallback_models).
    fallback_models: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=MAX_MODEL_CHARS)]],
            Field(max_length=MAX_FALLBACK_MODELS),
        ]
        | None
    ) = None
    # USD the agent may spend over its life (AgentConfig.max_cost_usd); 0: no budget.
    max_cost_usd: Annotated[float, Field(ge=0)] | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Defaults are not validated, so this refuses only a null the client sent.
        if value is None:
            raise PydanticCustomError("null", "null is not a value here; leave the field out")
        return value

    @field_validator("max_context_tokens", mode="before")
    @classmethod
    def _whole_double(cls, value: object) -> object:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> EditPatch:
        if not self.model_fields_set:
            raise PydanticCustomError("empty", "the patch is empty")
        return self


EDITABLE = tuple(EditPatch.model_fields)

# What each field must be, said the same way whichever check failed.
_MUST_BE = {
    "goal": f"a string of at most {MAX_FIELD_BYTES} bytes",
    "system_prompt": f"a string of at most {MAX_FIELD_BYTES} bytes",
    "temperature": "a number between 0 and 2",
    "max_context_tokens": f"a whole number >= 0 (at most {MAX_CONTEXT_TOKENS})",
    "memory": 'map note names to text (or "" / null to delete)',
    "tools": "a list of tool names or Tool objects, as in CreateAgent.tools",
    "approvals": 'map tool names to "always", "never" or "ask"',
    "double_texting": '"queue", "steer", "interrupt" or "reject"',
    "fallback_models": MUST_BE_FALLBACKS,
    "max_cost_usd": "a number of USD >= 0",
}


def parse(patch: dict[str, Any]) -> EditPatch:
    """The patch, checked whole; ValueError with one message naming every bad field."""
    try:
        return EditPatch.model_validate(patch)
    except ValidationError as err:
        raise ValueError("; ".join(dict.fromkeys(_describe(e) for e in err.errors()))) from None


def _describe(error: ErrorDetails) -> str:
    loc = error["loc"]
    if not loc:
        return f"edit.patch is empty: it may set {', '.join(EDITABLE)}"
    name = str(loc[0])
    if error["type"] == "extra_forbidden":
        return f"edit.patch.{name} cannot be edited: edit.patch may set {', '.join(EDITABLE)}"
    if name in ("memory", "approvals"):
        got = f"{_shown(loc[1])} is" if len(loc) > 1 else "got"
        return f"edit.patch.{name} must {_MUST_BE[name]}; {got} {_shown(error['input'])}"
    return f"edit.patch.{name} must be {_MUST_BE[name]}; got {_shown(error['input'])}"


def _shown(value: object, limit: int = 60) -> str:
    """The value as the client wrote it (JSON; a Struct's whole doubles as integers), cut short."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"

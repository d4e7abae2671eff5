"""Memory notes: what an agent keeps on purpose, beyond the transcript and its summary.

The model gets one tool, `remember`, to save, replace or delete a named note. Notes live in the
workflow state (so they survive crashes, continue-as-new and compaction, which never touches them),
are shown to the model in the system message of every turn, and to clients through GetAgent.
Everything here runs inside the workflow: plain, deterministic code.
"""

from __future__ import annotations

from typing import Any

from engram.workflows.function_tool import function_tool
from engram.workflows.model_json import NotAnObject, UnusableJSON, parse_model_arguments
from engram.workflows.types import MemoryNote, ToolCall

REMEMBER = "remember"
MAX_NOTES = 32
MAX_NAME_CHARS = 64
MAX_NOTE_CHARS = 2000

REMEMBER_TOOL: dict[str, Any] = function_tool(
    REMEMBER,
    "Save a named memory note, replacing any note of that name; empty content deletes "
    "it. Notes last for the whole life of this agent, however long the conversation "
    "gets, and are shown to you at every turn. Keep in them what you must not forget: "
    "facts about the user, preferences, decisions, plans, progress on the goal. "
    f"At most {MAX_NOTES} notes of {MAX_NOTE_CHARS} characters.",
    {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "description": "short key, e.g. user_name or current_plan",
            },
            "content": {"type": "string", "description": "the note; empty to delete it"},
        },
        "required": ["name", "content"],
    },
)


class NoteError(ValueError):
    """A tool call the agent must be told was refused, and why."""


def apply(notes: list[MemoryNote], call: ToolCall, now: float) -> str:
    """Carry out the model's tool call on `notes`; the result the model is shown.

    Raises NoteError for a call that changes nothing (unknown tool, bad arguments, a limit).
    """
    if call.name != REMEMBER:
        raise NoteError(f"unknown tool {call.name!r}; the only tool is {REMEMBER!r}")
    try:
        arguments = parse_model_arguments(call.arguments)
    except NotAnObject:
        raise NoteError("arguments must be a JSON object with name and content") from None
    except UnusableJSON as err:
        raise NoteError(f"arguments are {err}") from None
    return write(notes, str(arguments.get("name", "")), str(arguments.get("content", "")), now)


def write(notes: list[MemoryNote], name: str, content: str, now: float) -> str:
    """Save, replace or (empty content) delete the note `name`; says which it did."""
    name, content = name.strip(), content.strip()
    check(notes, name, content)
    existing = next((n for n in notes if n.name == name), None)
    if not content:
        if existing is None:
            return f"there was no note {name!r}"
        notes.remove(existing)
        return f"deleted note {name!r}"
    if existing is not None:
        existing.content, existing.updated_at = content, now
        return f"updated note {name!r}"
    notes.append(MemoryNote(name, content, now))
    return f"saved note {name!r}"


def check(notes: list[MemoryNote], name: str, content: str) -> None:
    """Raise NoteError if writing `content` under `name` would break a limit."""
    if not name or len(name) > MAX_NAME_CHARS:
        raise NoteError(f"name must be 1 to {MAX_NAME_CHARS} characters")
    if len(content) > MAX_NOTE_CHARS:
        raise NoteError(f"content is {len(content)} characters; the limit is {MAX_NOTE_CHARS}")
    if content and len(notes) >= MAX_NOTES and all(n.name != name for n in notes):
        raise NoteError(f"already {MAX_NOTES} notes: delete or merge one first")


def notes_section(notes: list[MemoryNote]) -> str:
    if not notes:
        return ""
    lines = "\n".join(f"- {n.name}: {n.content}" for n in notes)
    return f"Your memory notes (kept with the {REMEMBER} tool):\n{lines}"

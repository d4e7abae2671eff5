"""What the LLM is sent for a turn: the agent's instructions, then as much conversation as fits."""

from __future__ import annotations

from engram.vocabulary import TurnOutcome
from engram.workflows.memory import notes_section
from engram.workflows.tokens import CHARS_PER_TOKEN, TextCounter, estimated
from engram.workflows.types import AgentSpec, Attachment, ChatMessage, MemoryNote, Turn

# A few tokens of chat-template overhead per message, on top of its content's.
TOKENS_PER_MESSAGE = 4


# What an image costs in a prompt, whatever its size: OpenAI's high-detail tiles for a 1024x1024
# image come to 765 tokens; other vision models are in the same range.
IMAGE_TOKENS = 800


def estimate_tokens(message: ChatMessage, count: TextCounter = estimated) -> int:
    attached = sum(
        IMAGE_TOKENS if a.kind == "image" else a.size // CHARS_PER_TOKEN
        for a in message.attachments
    )
    return TOKENS_PER_MESSAGE + count(message.content) + attached


# The context budget of an agent created without max_context_tokens.
DEFAULT_CONTEXT_TOKENS = 8192


def context_budget(spec: AgentSpec) -> int:
    return spec.settings.max_context_tokens or DEFAULT_CONTEXT_TOKENS


def system_message(
    spec: AgentSpec, summary: str = "", notes: list[MemoryNote] | None = None
) -> ChatMessage | None:
    memory = f"Summary of the conversation before the messages below:\n{summary}" if summary else ""
    parts = [
        p
        for p in (
            spec.system_prompt.strip(),
            _goal_line(spec.goal),
            notes_section(notes or []),
            memory,
        )
        if p
    ]
    return ChatMessage("system", "\n\n".join(parts)) if parts else None


def turn_messages(turns: list[Turn]) -> list[ChatMessage]:
    """Completed turns as user/assistant pairs (with what the user added while the turn ran);
    failed and cancelled turns leave nothing."""
    messages: list[ChatMessage] = []
    for turn in turns:
        if turn.outcome == TurnOutcome.COMPLETED:
            messages.append(ChatMessage("user", turn.user, turn.attachments))
            messages += [ChatMessage("user", text) for text in turn.added]
            messages.append(ChatMessage("assistant", turn.reply))
    return messages


def _goal_line(goal: str) -> str:
    return f"Your goal: {goal.strip()}" if goal.strip() else ""


def build_prompt(
    spec: AgentSpec,
    turns: list[Turn],
    user: str,
    summary: str = "",
    notes: list[MemoryNote] | None = None,
    count: TextCounter = estimated,
    attachments: list[Attachment] | None = None,
) -> list[ChatMessage]:
    """System message (with memory notes and the summary of compacted turns), completed turns
    oldest first, then the new user message.

    Failed and cancelled turns are left out: a half reply is never part of the agent's memory.
    If the prompt would exceed the context budget, the oldest turns are dropped whole until it
    fits (compaction normally keeps it from coming to that); the system message and the new user
    message are always sent.
    """
    head = system_message(spec, summary, notes)
    tail = ChatMessage("user", user, list(attachments or []))
    budget = context_budget(spec) - estimate_tokens(tail, count)
    if head is not None:
        budget -= estimate_tokens(head, count)
    kept = turns[len(turns) - newest_that_fit(turns, budget, count) :]
    return ([head] if head else []) + turn_messages(kept) + [tail]


def turn_tokens(turn: Turn, count: TextCounter = estimated) -> int:
    """What a turn adds to a prompt (nothing, if it did not complete)."""
    return sum(estimate_tokens(m, count) for m in turn_messages([turn]))


def newest_that_fit(turns: list[Turn], room: int, count: TextCounter = estimated) -> int:
    """How many of the newest turns fit in `room` tokens, walking back a whole turn at a time
    (so a reply never loses its question) and stopping at the first that does not fit."""
    used = kept = 0
    for turn in reversed(turns):
        used += turn_tokens(turn, count)
        if used > room:
            break
        kept += 1
    return kept

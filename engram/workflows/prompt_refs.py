"""An LLM request names the long texts of its prompt by hash instead of carrying them again.

Every LLM call's input holds its whole prompt, and a turn calls the model once per round of tool
use: a 20,000-character message or a 64 KiB tool output was copied into every call's input, in
history, for as long as it stayed in the context. Now a text longer than REF_CHARS goes inline
once, with `store_texts` set; the activity puts it in the blob store under its SHA-256 and says so
(`LLMResult.stored`), and every later request names it by that hash. The workflow only keeps the
hashes the latest prompt still uses, so what it carries stays as small as the prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib

from engram.workflows.types import AgentState, ChatMessage, LLMRequest, LLMResult, ToolRound

# Texts longer than this go by reference once stored: a hash (64 characters) and a field cost
# about 100 bytes, so shorter texts are cheaper inline.
REF_CHARS = 1024


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PromptTexts:
    """Which long texts of the agent's prompt are in the blob store (state.stored_texts)."""

    def __init__(self, state: AgentState) -> None:
        self.state = state

    def referenced(self, request: LLMRequest) -> LLMRequest:
        """`request` with every stored long text replaced by its hash, asking the activity to
        store the rest."""
        stored = set(self.state.stored_texts)
        return dataclasses.replace(
            request,
            messages=[_message(m, stored) for m in request.messages],
            tool_rounds=[_round(r, stored) for r in request.tool_rounds],
            store_texts=True,
        )

    def forget(self) -> None:
        """The store lost a text (another store, or a restore): send every text inline again."""
        self.state.stored_texts = []

    def remember(self, request: LLMRequest, result: LLMResult) -> None:
        """Keep the hashes this request used or had stored, and no others."""
        used = {m.content_sha256 for m in request.messages}
        used.update(h for r in request.tool_rounds for h in r.result_sha256)
        used.update(result.stored)
        used.discard("")
        self.state.stored_texts = sorted(used)


def _message(message: ChatMessage, stored: set[str]) -> ChatMessage:
    if len(message.content) <= REF_CHARS:
        return message
    sha256 = text_sha256(message.content)
    if sha256 not in stored:
        return message
    return dataclasses.replace(message, content="", content_sha256=sha256)


def _round(round_: ToolRound, stored: set[str]) -> ToolRound:
    hashes = [
        text_sha256(r) if len(r) > REF_CHARS and text_sha256(r) in stored else ""
        for r in round_.results
    ]
    if not any(hashes):
        return round_
    results = ["" if h else r for r, h in zip(round_.results, hashes, strict=True)]
    return dataclasses.replace(round_, results=results, result_sha256=hashes)

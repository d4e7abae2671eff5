"""The LLM activity's side of prompts by reference (workflows/prompt_refs.py): long texts named
by hash are read from the blob store, and long texts sent inline are put there when asked."""

from __future__ import annotations

import dataclasses

from engram.transcripts import BlobStore
from engram.workflows.prompt_refs import REF_CHARS, text_sha256
from engram.workflows.types import ChatMessage, LLMRequest, ToolRound


class TextMissing(Exception):
    """A text the request names is not in the blob store."""


def needs_store(request: LLMRequest) -> bool:
    """Whether `request` names a text or has one to store: most have neither, and skip both."""
    return (
        any(m.content_sha256 for m in request.messages)
        or any(r.result_sha256 for r in request.tool_rounds)
        or (
            request.store_texts
            and (
                any(len(m.content) > REF_CHARS for m in request.messages)
                or any(len(v) > REF_CHARS for r in request.tool_rounds for v in r.results)
            )
        )
    )


def resolved(store: BlobStore | None, request: LLMRequest) -> tuple[LLMRequest, dict[str, bytes]]:
    """`request` with every named text read back, and the long inline texts to store by hash
    (only when the request asks): the caller stores them while the model answers."""
    to_store: dict[str, bytes] = {}

    def text(sha256: str) -> str:
        data = store.get_blob(sha256) if store is not None else None
        if data is None:
            raise TextMissing(f"prompt text {sha256} is missing from the store")
        return data.decode()

    def keep(value: str) -> None:
        if store is not None and request.store_texts and len(value) > REF_CHARS:
            to_store[text_sha256(value)] = value.encode()

    def message(m: ChatMessage) -> ChatMessage:
        if m.content_sha256:
            return dataclasses.replace(m, content=text(m.content_sha256), content_sha256="")
        keep(m.content)
        return m

    def round_(r: ToolRound) -> ToolRound:
        hashes = r.result_sha256 or [""] * len(r.results)
        results = [text(h) if h else v for v, h in zip(r.results, hashes, strict=True)]
        for value, sha256 in zip(results, hashes, strict=True):
            if not sha256:
                keep(value)
        return dataclasses.replace(r, results=results, result_sha256=[])

    messages = [message(m) for m in request.messages]
    rounds = [round_(r) for r in request.tool_rounds]
    return dataclasses.replace(request, messages=messages, tool_rounds=rounds), to_store


def store_all(store: BlobStore, texts: dict[str, bytes]) -> list[str]:
    for sha256, data in texts.items():
        store.put_blob(sha256, data)
    return sorted(texts)

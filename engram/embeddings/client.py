"""Texts to vectors through an OpenAI-compatible `/v1/embeddings`, in batches."""

from __future__ import annotations

from typing import Protocol

import openai

from engram.llm_settings import LLMEndpoint, LLMEndpoints

# Inputs per request, and characters of each that are embedded: a message longer than this is
# known by its beginning (models take some 8,000 tokens; this stays well under for any text).
BATCH = 64
MAX_CHARS = 8_000
# An embedding request is short; waiting longer would hold up a recall.
TIMEOUT = 15.0


class TextEmbedder(Protocol):
    # What the store keeps the vectors under.
    name: str

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


class Embedder:
    """The worker's: an OpenAI-compatible endpoint's embeddings model."""

    def __init__(self, endpoints: LLMEndpoints, model: str) -> None:
        endpoint, self.model = endpoints.route(model)
        self.endpoint: LLMEndpoint = endpoint
        # The store keeps vectors by the name given, so two endpoints' models never mix.
        self.name = model
        self._client = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key or "unused",
            # Callers retry: a failed indexing step is tried again later, a recall falls back.
            max_retries=0,
            timeout=min(endpoint.timeout, TIMEOUT),
        )

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            batch = [t[:MAX_CHARS] for t in texts[start : start + BATCH]]
            answer = await self._client.embeddings.create(
                model=self.model, input=batch, encoding_format="float"
            )
            ordered = sorted(answer.data, key=lambda d: d.index)
            if len(ordered) != len(batch):
                raise ValueError(f"{len(batch)} texts embedded as {len(ordered)} vectors")
            vectors += [list(d.embedding) for d in ordered]
        return vectors

    async def close(self) -> None:
        await self._client.close()

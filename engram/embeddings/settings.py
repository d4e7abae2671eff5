"""Whether, and with which model, the worker embeds transcripts: flags and the environment."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

# Cosine similarity below which a neighbour is no hit: unrelated text is near 0 for most models.
MIN_SIMILARITY = 0.3


@dataclass(frozen=True)
class EmbeddingSettings:
    """`model` is routed as an LLM model is: `NAME/model` on the endpoint `--llm-endpoint NAME`,
    else the default endpoint (engram/llm_settings.py). An empty `model` turns it all off."""

    model: str = ""
    min_similarity: float = MIN_SIMILARITY

    @property
    def enabled(self) -> bool:
        return bool(self.model)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search by meaning")
    group.add_argument(
        "--embeddings-model",
        default=os.environ.get("ENGRAM_EMBEDDINGS_MODEL", ""),
        metavar="MODEL",
        help="an embeddings model of the LLM endpoint (or NAME/model of a named one) that "
        "`recall` also searches by meaning with; messages are embedded as they are archived "
        "(default: ENGRAM_EMBEDDINGS_MODEL, else off)",
    )
    group.add_argument(
        "--embeddings-min-similarity",
        type=float,
        default=float(os.environ.get("ENGRAM_EMBEDDINGS_MIN_SIMILARITY", str(MIN_SIMILARITY))),
        help="cosine similarity a message needs to be a hit by meaning "
        f"(default: ENGRAM_EMBEDDINGS_MIN_SIMILARITY, else {MIN_SIMILARITY})",
    )


def from_args(args: argparse.Namespace) -> EmbeddingSettings:
    if not -1.0 <= args.embeddings_min_similarity <= 1.0:
        raise SystemExit("--embeddings-min-similarity must be between -1 and 1")
    return EmbeddingSettings(
        model=args.embeddings_model.strip(), min_similarity=args.embeddings_min_similarity
    )

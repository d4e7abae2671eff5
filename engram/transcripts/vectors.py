"""Search by meaning: how vectors are kept in the store, compared, and fused with full-text hits.

A vector is stored unit length, as little-endian float32 (sqlite-vec's own BLOB format), so the
cosine similarity of two is their dot product. What gets a vector is what full-text search
indexes (search.index_texts): never sealed text, never `recall`'s own calls and results, so an
embedding (which leaks what it was made from) exists only for text the database holds in the
clear anyway.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from engram.transcripts import search
from engram.workflows.types import Event

# Full-text ranks and nearest neighbours fused per page: at most this many of each, so a fused
# recall is bounded whatever the agent's size; pages past it are full-text only.
MAX_POOL = 250
# Reciprocal rank fusion's constant (Cormack et al.): a hit's score is the sum over the lists it
# is in of 1 / (RRF_K + rank).
RRF_K = 60
# Events read per step of indexing, and how far before a step it looks for the `recall` call
# whose result the step may begin with (a call and its result are a few events apart).
INDEX_WINDOW = 256
INDEX_LOOKBACK = 64


@dataclass(frozen=True)
class Nearest:
    """One event near a query: its seq and cosine similarity (1 the same direction)."""

    seq: int
    similarity: float


def pack(vector: Sequence[float]) -> bytes:
    """`vector` scaled to unit length, as float32 bytes. A zero vector stays zero."""
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return array("f", (x / norm for x in vector)).tobytes()


def unpack(data: bytes) -> list[float]:
    return array("f", data).tolist()


def cosine_distance(a: bytes, b: bytes) -> float:
    """1 - cosine similarity of two packed (unit) vectors: sqlite-vec's vec_distance_cosine, for
    a Python whose sqlite3 cannot load extensions."""
    left, right = array("f", a), array("f", b)
    if len(left) != len(right):
        raise ValueError(f"vectors of {len(left)} and {len(right)} dimensions")
    return 1.0 - float(sum(map(operator.mul, left, right)))


def index_rows(window: list[Event], after: int) -> list[tuple[int, float, str]]:
    """(seq, ts, text) of the events after `after` whose text full-text search indexes; `window`
    starts up to INDEX_LOOKBACK events earlier, so a `recall` result knows its call."""
    texts = search.index_texts(window)
    return [(e.seq, e.ts, t) for e, t in zip(window, texts, strict=True) if e.seq > after and t]


def fuse(*ranked: Sequence[int]) -> list[int]:
    """Reciprocal rank fusion of lists of seqs, each best first: best first, ties newest first."""
    scores: dict[int, float] = {}
    for seqs in ranked:
        for rank, seq in enumerate(seqs, start=1):
            scores[seq] = scores.get(seq, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores, key=lambda seq: (-scores[seq], -seq))

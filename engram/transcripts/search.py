"""Full-text search over an agent's archived stream: the query, its hits, their excerpts.

Each backend matches with its database's own engine (SQLite FTS5, PostgreSQL tsvector); what is
shared lives here: how a query becomes words, how a hit's excerpt is cut, the bounds of a page.
Every word of a query must occur in an event for it to match (case-insensitive, whole words, no
stemming), so a search means the same on both backends.

Sealed text (the encrypted store's `enc:v1:` fields) is never indexed: its words are unknown to
the database, and base64 is no words anyone searches for. The encrypted store searches by opening
rows itself instead (engram/codec/encrypted_store.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engram.vocabulary import EventKind
from engram.workflows.types import Event

# Hits per page and characters per excerpt: what the model is shown must stay small.
MAX_HITS = 10
EXCERPT_CHARS = 300
# Words of a query used; the rest is ignored.
MAX_WORDS = 16
SEALED_PREFIX = "enc:v1:"
# Engram's own tool whose calls and results a search leaves out: they hold earlier queries and
# their hits, which would otherwise match every later search.
RECALL = "recall"

# Kinds whose text is searched: what was said and done, each once. A reply's streamed pieces
# (TEXT) are its FINAL_ANSWER again, cut anywhere; notices and thoughts are not the conversation.
SEARCHED_KINDS = frozenset(
    {
        EventKind.USER_MESSAGE,
        EventKind.FINAL_ANSWER,
        EventKind.ERROR,
        EventKind.TOOL_CALL,
        EventKind.TOOL_RESULT,
        EventKind.OBSERVATION,
    }
)

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(kw_only=True)
class SearchQuery:
    """What to look for in one agent's stream, and which page of it."""

    agent_id: str
    text: str
    # Only events with seq > from_sequence, and (when not 0) at or after `since`, before `until`
    # (Unix seconds).
    from_sequence: int = 0
    since: float = 0.0
    until: float = 0.0
    # Hits skipped, best first: page n starts at n * limit.
    offset: int = 0
    limit: int = MAX_HITS


@dataclass(kw_only=True)
class SearchHit:
    """One matching event: where it is in the stream, when, what kind, and an excerpt."""

    seq: int
    ts: float
    kind: str
    code: str = ""
    excerpt: str = ""


@dataclass(kw_only=True)
class SearchPage:
    hits: list[SearchHit] = field(default_factory=list)
    # More hits match past this page.
    more: bool = False


def words(text: str) -> list[str]:
    """The query's words, lower case, each once, in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        seen.setdefault(word, None)
    return list(seen)[:MAX_WORDS]


def fts5_query(text: str) -> str:
    """An FTS5 MATCH expression: every word, each a quoted string (no operators get through)."""
    return " ".join(f'"{w}"' for w in words(text))


def matches(text: str, query_words: list[str]) -> bool:
    """Whether every word occurs in `text` as a whole word (how the engines match)."""
    present = set(_WORD.findall(text.lower()))
    return bool(query_words) and all(w in present for w in query_words)


def score(text: str, query_words: list[str]) -> float:
    """A rank for a match found without an engine: occurrences of the words, per word of text."""
    found = _WORD.findall(text.lower())
    hits = sum(1 for w in found if w in set(query_words))
    return hits / (len(found) + 10)


def excerpt(text: str, query_words: list[str], size: int = EXCERPT_CHARS) -> str:
    """At most `size` characters of `text` around its first matching word."""
    text = " ".join(text.split())
    if len(text) <= size:
        return text
    lower = text.lower()
    first = min(
        (m.start() for w in query_words if (m := re.search(rf"\b{re.escape(w)}\b", lower))),
        default=0,
    )
    start = max(0, min(first - size // 3, len(text) - size))
    cut = text[start : start + size]
    return ("…" if start else "") + cut + ("…" if start + size < len(text) else "")


def index_texts(events: list[Event]) -> list[str]:
    """What of each event goes into the index: its text, but nothing of a sealed field, and
    nothing of `recall`'s own calls, results and observations. A call and its result are always
    archived together (both are recorded in one tool step, between two archivings)."""
    recall_calls = {e.call_id for e in events if e.kind == EventKind.TOOL_CALL and e.code == RECALL}
    return [
        ""
        if e.kind not in SEARCHED_KINDS
        or e.text.startswith(SEALED_PREFIX)
        or (e.call_id and e.call_id in recall_calls)
        or (e.kind == EventKind.OBSERVATION and e.text.startswith(f"{RECALL} "))
        else e.text
        for e in events
    ]


def page(found: list[Event], query: SearchQuery) -> SearchPage:
    """A page of hits from the matching events, best first, asked for one more than a page."""
    query_words = words(query.text)
    return SearchPage(
        hits=[
            SearchHit(
                seq=e.seq, ts=e.ts, kind=e.kind, code=e.code, excerpt=excerpt(e.text, query_words)
            )
            for e in found[: query.limit]
        ],
        more=len(found) > query.limit,
    )

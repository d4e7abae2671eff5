"""A transcript store whose message text is encrypted: a wrapper around any TranscriptStore.

What people wrote and what the model answered (Event.text and structured; Turn.user, reply and
error) and the files they attached (blobs) are sealed with the keyring before they reach the
store, and opened when read. Ids, sequence numbers, kinds, codes and timestamps stay as they are,
so the store's queries (by agent, by seq, by turn index) and an operator's SQL still work. A
sealed text field is

    enc:v1:<key id>:<base64 of nonce, ciphertext and tag>

bound to its agent, its row and its field, so it cannot be copied into another row; a sealed blob
is the same prefix and key id, then the sealed bytes. Text stored before encryption was turned on
does not start with the prefix, and a blob stored then hashes to its own name: both are read as
they are.

Attachments are named by `blob_name`: with encryption on, a keyed hash (HMAC-SHA256 under a key
derived from the newest encryption key), not the plaintext's SHA-256, so whoever reads the store
(or a history) cannot confirm a guess of a file's content by hashing it. Blobs named by SHA-256
before (attachments, prompt texts, reply checkpoints) are read as ever.

Sealed text is never indexed for full-text search (its words would be plaintext in the
database). A search here opens the agent's newest events instead, at most SEARCH_SCAN_EVENTS of
them, and matches their words in memory: older events are out of its reach. Nor is sealed text
embedded for search by meaning (an embedding leaks what it was made from): vectors come from the
store's own rows (index_window), where a sealed field is base64 and never indexed, so only text
stored before encryption was turned on can have one.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any, TypeVar

from engram.auth.records import ApiKey
from engram.codec.cipher import seal, unseal
from engram.codec.keyring import EncryptionKeyError, Keyring
from engram.transcripts import TranscriptStore, search
from engram.transcripts.search import SearchPage, SearchQuery
from engram.transcripts.spend import DaySpend, Hold, TenantDay
from engram.transcripts.vectors import Nearest
from engram.workflows.types import AgentTool, Event, Turn

PREFIX = "enc:v1:"
EVENT_FIELDS = ("text",)
TURN_FIELDS = ("user", "reply", "error", "summary_after")
# A sealed Event.structured is {STRUCTURED_KEY: <sealed JSON text>}.
STRUCTURED_KEY = "enc:v1"

Row = TypeVar("Row", Event, Turn)
# How far back a search of sealed events reaches, and how many it opens at a time.
SEARCH_SCAN_EVENTS = 20_000
SEARCH_WINDOW = 1_000


class EncryptedTranscriptStore:
    """`inner`, with the text fields of events and turns encrypted at rest."""

    def __init__(self, inner: TranscriptStore, keyring: Keyring) -> None:
        self._inner = inner
        self._keyring = keyring

    def append(self, agent_id: str, events: list[Event]) -> None:
        self._inner.append(agent_id, [self._seal(agent_id, _event_place(e), e) for e in events])

    def between(self, agent_id: str, after: int, through: int) -> list[Event]:
        events = self._inner.between(agent_id, after, through)
        return [self._open(agent_id, _event_place(e), e) for e in events]

    def last_seq(self, agent_id: str) -> int:
        return self._inner.last_seq(agent_id)

    def search(self, query: SearchQuery) -> SearchPage:
        """Matches among the newest SEARCH_SCAN_EVENTS events, opened here (none is indexed)."""
        query_words = search.words(query.text)
        if not query_words:
            return SearchPage()
        found: list[tuple[float, Event]] = []
        through = self._inner.last_seq(query.agent_id)
        floor = max(query.from_sequence, through - SEARCH_SCAN_EVENTS)
        while through > floor:
            after = max(floor, through - SEARCH_WINDOW)
            window = self.between(query.agent_id, after, through)
            texts = search.index_texts(window)
            for event, text in zip(window, texts, strict=True):
                if _in_time(event, query) and search.matches(text, query_words):
                    found.append((search.score(text, query_words), event))
            through = after
        found.sort(key=lambda hit: (-hit[0], -hit[1].seq))
        best = [e for _, e in found[query.offset : query.offset + query.limit + 1]]
        return search.page(best, query)

    # Vectors are made from, and kept beside, the rows as stored: sealed text stays out of them.
    def index_window(self, agent_id: str, after: int, through: int) -> list[tuple[int, float, str]]:
        return self._inner.index_window(agent_id, after, through)

    def vector_mark(self, agent_id: str, model: str) -> int:
        return self._inner.vector_mark(agent_id, model)

    def put_vectors(
        self, agent_id: str, model: str, rows: list[tuple[int, float, bytes]], through: int
    ) -> None:
        self._inner.put_vectors(agent_id, model, rows, through)

    def nearest(self, query: SearchQuery, model: str, vector: bytes, k: int) -> list[Nearest]:
        return self._inner.nearest(query, model, vector, k)

    def append_turns(self, agent_id: str, first_index: int, turns: list[Turn]) -> None:
        self._inner.append_turns(
            agent_id, first_index, [self._seal(agent_id, _turn_place(t), t) for t in turns]
        )

    def turns(self, agent_id: str, count: int) -> list[Turn]:
        turns = self._inner.turns(agent_id, count)
        return [self._open(agent_id, _turn_place(t), t) for t in turns]

    def forget_after(self, agent_id: str, seq: int, turn_index: int) -> None:
        self._inner.forget_after(agent_id, seq, turn_index)

    def copy_through(self, source: str, target: str, seq: int, turn_count: int) -> None:
        # Sealed text is bound to its agent: opened as the source's, sealed again as the target's.
        self.append(target, self.between(source, 0, seq))
        self.append_turns(target, 0, self.turns(source, turn_count))

    def put_blob(self, sha256: str, data: bytes) -> None:
        key_id, key = self._keyring.newest
        sealed = seal(key, data, _associated("", f"blob/{sha256}", "data"))
        self._inner.put_blob(sha256, f"{PREFIX}{key_id}:".encode() + sealed)

    def keyed_name(self, data: bytes) -> str:
        """The name to store `data` under: `hmac:<key id>:<HMAC-SHA256 hex>`."""
        key_id, key = self._keyring.newest
        naming = hmac.new(key, b"engram/blob-name/v1", hashlib.sha256).digest()
        return f"hmac:{key_id}:{hmac.new(naming, data, hashlib.sha256).hexdigest()}"

    def get_blob(self, sha256: str) -> bytes | None:
        stored = self._inner.get_blob(sha256)
        if stored is None or hashlib.sha256(stored).hexdigest() == sha256:
            return stored  # stored before encryption was turned on: its hash is its own
        raw_id, colon, sealed = stored.removeprefix(PREFIX.encode()).partition(b":")
        key_id = raw_id.decode(errors="replace")
        if not stored.startswith(PREFIX.encode()) or not colon:
            raise EncryptionKeyError(key_id, f"attachment {sha256} is neither plain nor sealed")
        return unseal(self._keyring, key_id, sealed, _associated("", f"blob/{sha256}", "data"))

    # The tool catalog is configuration (names, schemas) and API key records are salted hashes:
    # neither is conversation, both are stored as they are.
    def publish_tools(self, tools: list[AgentTool]) -> None:
        self._inner.publish_tools(tools)

    def tools(self) -> list[AgentTool]:
        return self._inner.tools()

    def add_api_key(self, key: ApiKey) -> None:
        self._inner.add_api_key(key)

    def api_keys(self) -> list[ApiKey]:
        return self._inner.api_keys()

    def revoke_api_key(self, key_id: str, at: float) -> bool:
        return self._inner.revoke_api_key(key_id, at)

    # Budgets and spend are amounts, not text: kept as they are.
    def set_tenant_budget(self, tenant: str, daily_usd: float | None) -> None:
        self._inner.set_tenant_budget(tenant, daily_usd)

    def hold_spend(self, hold: Hold, default_budget_usd: float) -> DaySpend:
        return self._inner.hold_spend(hold, default_budget_usd)

    def settle_spend(self, hold: Hold, cost_usd: float) -> None:
        self._inner.settle_spend(hold, cost_usd)

    def tenant_days(self, day: str) -> list[TenantDay]:
        return self._inner.tenant_days(day)

    def close(self) -> None:
        self._inner.close()

    def _seal(self, agent_id: str, place: str, row: Row) -> Row:
        sealed: dict[str, Any] = {}
        for name in _fields(row):
            text: str = getattr(row, name)
            if text:  # an empty field stays empty: its length says as much as its ciphertext
                sealed[name] = self._seal_text(text, _associated(agent_id, place, name))
        if isinstance(row, Event) and row.structured is not None:
            # A structured final answer is the model's output too; it stays a JSON object.
            plain = json.dumps(row.structured)
            sealed["structured"] = {
                STRUCTURED_KEY: self._seal_text(plain, _associated(agent_id, place, "structured"))
            }
        return dataclasses.replace(row, **sealed)

    def _open(self, agent_id: str, place: str, row: Row) -> Row:
        opened: dict[str, Any] = {}
        for name in _fields(row):
            text: str = getattr(row, name)
            if text.startswith(PREFIX):  # else stored before encryption was turned on
                opened[name] = self._open_text(text, _associated(agent_id, place, name))
        if isinstance(row, Event) and row.structured is not None:
            sealed = row.structured.get(STRUCTURED_KEY)
            if isinstance(sealed, str) and len(row.structured) == 1:
                plain = self._open_text(sealed, _associated(agent_id, place, "structured"))
                opened["structured"] = json.loads(plain)
        return dataclasses.replace(row, **opened) if opened else row

    def _seal_text(self, text: str, associated: bytes) -> str:
        key_id, key = self._keyring.newest
        blob = seal(key, text.encode(), associated)
        return f"{PREFIX}{key_id}:{base64.b64encode(blob).decode()}"

    def _open_text(self, sealed: str, associated: bytes) -> str:
        key_id, colon, encoded = sealed.removeprefix(PREFIX).partition(":")
        if not sealed.startswith(PREFIX) or not colon:
            raise EncryptionKeyError(key_id, "a sealed transcript field is cut short")
        return unseal(self._keyring, key_id, base64.b64decode(encoded), associated).decode()


def _in_time(event: Event, query: SearchQuery) -> bool:
    return (not query.since or event.ts >= query.since) and (
        not query.until or event.ts < query.until
    )


def _fields(row: Event | Turn) -> tuple[str, ...]:
    return EVENT_FIELDS if isinstance(row, Event) else TURN_FIELDS


# Turns are bound by message id, not index: `turns()` does not return indexes.
def _event_place(event: Event) -> str:
    return f"event/{event.seq}"


def _turn_place(turn: Turn) -> str:
    return f"turn/{turn.message_id}"


def _associated(agent_id: str, place: str, name: str) -> bytes:
    return f"engram/transcript/v1\x00{agent_id}\x00{place}\x00{name}".encode()


def blob_name(store: object, data: bytes) -> str:
    """The name an attachment's bytes are stored under in `store`: keyed when it encrypts, its
    SHA-256 (content addressing, as ever) when it does not."""
    if isinstance(store, EncryptedTranscriptStore):
        return store.keyed_name(data)
    return hashlib.sha256(data).hexdigest()


def encrypted_store(store: TranscriptStore, keyring: Keyring | None) -> TranscriptStore:
    """`store` with its text encrypted, or `store` itself when encryption is off."""
    return store if keyring is None else EncryptedTranscriptStore(store, keyring)

"""Recall by meaning: with an embeddings model, recall finds a turn by related words that
full-text search cannot; vectors stay with their agent; sealed text gets none; and without one,
or with its endpoint down, recall is the full-text search it was."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engram import llm_settings
from engram.activities.archive import ArchiveActivities, ArchiveInput
from engram.codec.encrypted_store import EncryptedTranscriptStore
from engram.codec.keyring import Keyring
from engram.embeddings import settings as embedding_settings
from engram.embeddings.client import Embedder
from engram.embeddings.hybrid import HybridSearch
from engram.embeddings.settings import EmbeddingSettings
from engram.transcripts import TranscriptStore, open_transcript_store
from engram.transcripts.search import SearchQuery
from engram.transcripts.sqlite_store import SqliteTranscriptStore
from engram.transcripts.vectors import fuse, pack
from engram.v1 import agent_pb2
from engram.vocabulary import EventKind
from engram.workflows.types import Event
from tests.conftest import chat, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM, fake_embedding, text_of_content
from tests.postgres import PostgresServer
from tests.test_encryption_e2e import KEYS, stored_bytes
from tests.test_recall import converse, model, small_agent

MODEL = "fake-embed"
FACT = "the submarine periscope was repaired by Ingrid"
# No word of it is in FACT as a whole word ("periscopes", "repairs"), so full-text finds nothing.
RELATED = "periscopes repairs"


class LocalEmbedder:
    """The fake LLM's embedding, in process; `down` fails every call as an endpoint would."""

    name = MODEL

    def __init__(self, delay: float = 0.0) -> None:
        self.texts: list[str] = []
        self.down = False
        self.delay = delay

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self.down:
            raise ConnectionError("embeddings endpoint unreachable")
        if len(texts) > 1:  # indexing, not a query
            await asyncio.sleep(self.delay)
        self.texts += texts
        return [fake_embedding(t) for t in texts]


def said(seq: int, text: str, kind: str = EventKind.USER_MESSAGE, **fields: Any) -> Event:
    return Event(seq=seq, kind=kind, text=text, ts=1000.0 + seq, **fields)


def transcript(filler: int = 30) -> list[Event]:
    return [said(1, f"Please keep this in mind: {FACT}.")] + [
        said(seq, f"small talk {seq}: the weather is mild and the tea warm")
        for seq in range(2, 2 + filler)
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TranscriptStore]:
    if request.param == "sqlite":
        location = str(tmp_path / "transcripts.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        location = server.url
    opened = open_transcript_store(location)
    yield opened
    opened.close()


def test_vectors_keep_to_their_agent_model_and_bounds(store: TranscriptStore) -> None:
    agent, other = uuid.uuid4().hex, uuid.uuid4().hex
    near, far = pack(fake_embedding("periscope")), pack(fake_embedding("tea"))
    store.put_vectors(agent, MODEL, [(1, 1001.0, far), (2, 1002.0, near), (3, 1003.0, near)], 3)
    store.put_vectors(other, MODEL, [(1, 1001.0, near)], 1)
    store.put_vectors(agent, "another-model", [(4, 1004.0, near)], 4)

    def nearest(**fields: Any) -> list[int]:
        query = SearchQuery(agent_id=agent, text="periscope", **fields)
        return [n.seq for n in store.nearest(query, MODEL, near, 10)]

    # Only the agent's own, of this model, most similar first (ties newest first).
    assert nearest() == [3, 2, 1]
    found = store.nearest(SearchQuery(agent_id=agent, text="x"), MODEL, near, 10)
    assert found[0].similarity == pytest.approx(1.0, abs=1e-5) and found[2].similarity < 0.5
    assert nearest(from_sequence=2) == [3]
    assert nearest(since=1002.0, until=1003.0) == [2]
    assert [n.seq for n in store.nearest(SearchQuery(agent_id=agent, text="x"), MODEL, near, 1)]
    # The mark never goes back, and a store again changes nothing.
    assert store.vector_mark(agent, MODEL) == 3
    store.put_vectors(agent, MODEL, [(2, 1002.0, far)], 2)
    assert store.vector_mark(agent, MODEL) == 3 and nearest()[0] == 3
    assert store.vector_mark(agent, "unknown") == 0
    # A rewind forgets the vectors of what it forgets, and the mark with them.
    store.forget_after(agent, 1, 0)
    assert nearest() == [1]
    assert store.vector_mark(agent, MODEL) == 1


def test_the_index_window_leaves_out_what_full_text_leaves_out(store: TranscriptStore) -> None:
    agent = uuid.uuid4().hex
    store.append(
        agent,
        [
            said(1, "herons nest by the lake"),
            said(2, '{"query": "herons"}', kind=EventKind.TOOL_CALL, code="recall", call_id="c"),
            said(3, "1 match: herons", kind=EventKind.TOOL_RESULT, call_id="c"),
            said(4, "a streamed piece", kind=EventKind.TEXT),
            said(5, "enc:v1:k1:c2VhbGVk"),
            said(6, "Herons, yes.", kind=EventKind.FINAL_ANSWER),
        ],
    )
    assert store.index_window(agent, 0, 6) == [
        (1, 1001.0, "herons nest by the lake"),
        (6, 1006.0, "Herons, yes."),
    ]
    # A window that starts between `recall`'s call and its result still knows the result's call.
    assert store.index_window(agent, 2, 6) == [(6, 1006.0, "Herons, yes.")]


def test_the_flags_pick_a_model_and_its_endpoint_as_llm_models_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = argparse.ArgumentParser()
    llm_settings.add_arguments(parser)
    embedding_settings.add_arguments(parser)
    monkeypatch.delenv("ENGRAM_EMBEDDINGS_MODEL", raising=False)
    assert not embedding_settings.from_args(parser.parse_args([])).enabled

    args = parser.parse_args(
        ["--llm-endpoint", "local=http://127.0.0.1:9/v1", "--embeddings-model", "local/nomic"]
    )
    endpoints = llm_settings.endpoints_from_args(args, llm_settings.endpoint_from_args(args))
    settings = embedding_settings.from_args(args)
    embedder = Embedder(endpoints, settings.model)
    assert (embedder.endpoint.name, embedder.model, embedder.name) == (
        "local",
        "nomic",
        "local/nomic",
    )
    assert settings.min_similarity == embedding_settings.MIN_SIMILARITY
    assert Embedder(endpoints, "text-embedding-3-small").endpoint == endpoints.default

    monkeypatch.setenv("ENGRAM_EMBEDDINGS_MODEL", "from-env")
    monkeypatch.setenv("ENGRAM_EMBEDDINGS_MIN_SIMILARITY", "0.5")
    fresh = argparse.ArgumentParser()
    embedding_settings.add_arguments(fresh)
    assert embedding_settings.from_args(fresh.parse_args([])) == EmbeddingSettings("from-env", 0.5)
    with pytest.raises(SystemExit):
        embedding_settings.from_args(fresh.parse_args(["--embeddings-min-similarity", "2"]))


def test_reciprocal_rank_fusion_favours_hits_both_rankings_find() -> None:
    assert fuse([1, 2, 3], [3, 4]) == [3, 1, 4, 2]  # 4 and 2 tie (both second): newer first
    assert fuse([], [7, 5]) == [7, 5]
    assert fuse([5], [7]) == [7, 5]  # a tie: the newer first


async def test_meaning_finds_a_turn_full_text_does_not(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "transcripts.db")
    agent = uuid.uuid4().hex
    store.append(agent, transcript())
    store.append(uuid.uuid4().hex, [said(1, f"another agent's {FACT}")])
    hybrid = HybridSearch(store, LocalEmbedder(), EmbeddingSettings(model=MODEL))

    # Words alone find nothing; by meaning, the turn, in the shape words give.
    assert store.search(SearchQuery(agent_id=agent, text=RELATED)).hits == []
    page = await hybrid.search(SearchQuery(agent_id=agent, text=RELATED))
    assert [(h.seq, h.kind, h.ts) for h in page.hits] == [(1, EventKind.USER_MESSAGE, 1001.0)]
    assert FACT in page.hits[0].excerpt and not page.more
    # Only the agent's own vectors are searched: the other agent has none found here, and an
    # agent with none finds nothing by meaning.
    assert not (await hybrid.search(SearchQuery(agent_id=uuid.uuid4().hex, text=RELATED))).hits

    # Words and meaning together: an exact query still ranks its full-text match first, and
    # pages have full-text's bounds.
    weather = await hybrid.search(SearchQuery(agent_id=agent, text="weather tea"))
    assert len(weather.hits) == 10 and weather.more
    second = await hybrid.search(SearchQuery(agent_id=agent, text="weather tea", offset=10))
    assert not {h.seq for h in weather.hits} & {h.seq for h in second.hits}
    assert 1 not in {h.seq for h in weather.hits + second.hits}
    store.close()


async def test_without_its_endpoint_recall_searches_by_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteTranscriptStore(tmp_path / "transcripts.db")
    agent = uuid.uuid4().hex
    store.append(agent, transcript(filler=3))
    embedder = LocalEmbedder()
    embedder.down = True
    hybrid = HybridSearch(store, embedder, EmbeddingSettings(model=MODEL))
    assert not (await hybrid.search(SearchQuery(agent_id=agent, text=RELATED))).hits
    words = await hybrid.search(SearchQuery(agent_id=agent, text="periscope"))
    assert [h.seq for h in words.hits] == [1]
    # Nothing was marked done while it was down: it catches up once it is back.
    assert store.vector_mark(agent, MODEL) == 0
    embedder.down = False
    assert [
        h.seq for h in (await hybrid.search(SearchQuery(agent_id=agent, text=RELATED))).hits
    ] == [1]
    # Vectors of another size under the same model name (a changed model): words still answer.
    store.put_vectors(agent, MODEL, [(99, 1099.0, pack([1.0, 0.0]))], 5)
    with caplog.at_level(logging.WARNING, "engram.embeddings.hybrid"):
        words = await hybrid.search(SearchQuery(agent_id=agent, text="periscope"))
    assert [h.seq for h in words.hits] == [1]
    assert "by words only" in caplog.text
    store.close()


async def test_archiving_embeds_in_the_background(tmp_path: Path) -> None:
    store = SqliteTranscriptStore(tmp_path / "transcripts.db")
    agent = uuid.uuid4().hex
    embedder = LocalEmbedder()
    hybrid = HybridSearch(store, embedder, EmbeddingSettings(model=MODEL))
    archive = ArchiveActivities(store, hybrid.indexer)
    assert await archive.archive_events(ArchiveInput(agent, transcript(filler=600))) == 601
    deadline = time.monotonic() + 30
    while store.vector_mark(agent, MODEL) < 601:
        assert time.monotonic() < deadline, "the indexer did not catch up"
        await asyncio.sleep(0.05)
    assert len(embedder.texts) == 601
    store.close()


async def test_a_slow_endpoint_holds_a_recall_back_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engram.embeddings.hybrid.RECALL_CATCH_UP_SECONDS", 1.0)
    store = SqliteTranscriptStore(tmp_path / "transcripts.db")
    agent = uuid.uuid4().hex
    store.append(agent, transcript(filler=2000))
    hybrid = HybridSearch(store, LocalEmbedder(delay=0.3), EmbeddingSettings(model=MODEL))
    started = time.monotonic()
    page = await hybrid.search(SearchQuery(agent_id=agent, text="weather"))
    # Answered after the bound, with what was embedded by then (and every full-text match)...
    assert time.monotonic() - started < 5 and len(page.hits) == 10
    assert 0 < store.vector_mark(agent, MODEL) < 2001
    # ...and the rest is embedded in the background.
    deadline = time.monotonic() + 60
    while store.vector_mark(agent, MODEL) < 2001:
        assert time.monotonic() < deadline, "the indexer did not catch up"
        await asyncio.sleep(0.05)
    store.close()


async def test_an_encrypted_store_embeds_no_sealed_text(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.db"
    store = EncryptedTranscriptStore(open_transcript_store(path), Keyring.parse(KEYS))
    agent = uuid.uuid4().hex
    store.append(agent, transcript(filler=5))
    embedder = LocalEmbedder()
    hybrid = HybridSearch(store, embedder, EmbeddingSettings(model=MODEL))
    # Words still find it (the encrypted store's own scan); no vector was made, nothing of the
    # transcript was sent to be embedded (only the queries were).
    page = await hybrid.search(SearchQuery(agent_id=agent, text="periscope"))
    assert [h.seq for h in page.hits] == [1] and FACT in page.hits[0].excerpt
    assert not (await hybrid.search(SearchQuery(agent_id=agent, text=RELATED))).hits
    assert embedder.texts == ["periscope", RELATED]
    assert store.vector_mark(agent, MODEL) == 6
    store.close()
    assert vector_rows(path) == 0


def vector_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM event_vectors").fetchone()[0])


# --- the engine, with the fake LLM's /v1/embeddings ----------------------------------------


def test_recall_by_meaning_end_to_end(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = model
    engine = Engine(tmp_path, llm.url, ENGRAM_EMBEDDINGS_MODEL=MODEL).start()
    try:
        stub = engine.stub()
        agent_id = small_agent(stub)
        converse(stub, agent_id, FACT, turns=16)
        # The words, by full text (SearchHistory, the terminal's): nothing...
        request = agent_pb2.SearchHistoryRequest(agent_id=agent_id, query=RELATED)
        assert not stub.SearchHistory(request).hits
        # ...but recall, by meaning too, finds the turn, long compacted away.
        answer = finals(chat(stub, agent_id, f"recall {RELATED}"))
        assert FACT in answer[0] and "[seq 1, " in answer[0]
        prompt = llm.requests_for(f"recall {RELATED}")[0]["messages"]
        assert not any("Ingrid" in text_of_content(m["content"]) for m in prompt)
        asked = [r for r in llm.embedding_requests if r["input"] == [RELATED]]
        assert asked and asked[0]["model"] == MODEL
    finally:
        engine.stop()
    with sqlite3.connect(tmp_path / "transcripts.db") as db:
        agents = {row[0] for row in db.execute("SELECT DISTINCT agent_id FROM event_vectors")}
    assert agents == {agent_id}


def test_an_encrypted_engine_stores_no_vectors(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = model
    code = f"medlar{uuid.uuid4().hex[:10]}"
    engine = Engine(
        tmp_path, llm.url, ENGRAM_ENCRYPTION_KEYS=KEYS, ENGRAM_EMBEDDINGS_MODEL=MODEL
    ).start()
    try:
        stub = engine.stub()
        agent_id = small_agent(stub)
        converse(stub, agent_id, f"the locker code is {code}", turns=8)
        answer = finals(chat(stub, agent_id, "recall locker code"))
        assert f"the locker code is {code}" in answer[0]
    finally:
        engine.stop()
    assert vector_rows(tmp_path / "transcripts.db") == 0
    assert code.encode() not in stored_bytes(tmp_path)
    sent = json.dumps(llm.embedding_requests)
    assert code not in sent and "locker code" in sent

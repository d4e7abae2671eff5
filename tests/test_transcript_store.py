"""Both transcript stores keep the same promises: idempotent writes, ordered reads, shared by
separate processes, and (PostgreSQL) a database restart costs nothing but the calls in flight."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.transcripts import TranscriptStore, open_transcript_store
from engram.vocabulary import TurnOutcome
from engram.workflows.types import Event, Turn
from tests.postgres import PostgresServer


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "transcripts.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url


@pytest.fixture
def store(location: str) -> Iterator[TranscriptStore]:
    opened = open_transcript_store(location)
    yield opened
    opened.close()


def events(first: int, last: int, text: str = "tok") -> list[Event]:
    return [
        Event(seq=seq, kind="text", text=f"{text} {seq} ✓", message_id="m", ts=1.5)
        for seq in range(first, last + 1)
    ]


def test_events_in_order_and_idempotent(store: TranscriptStore) -> None:
    agent = uuid.uuid4().hex
    store.append(agent, events(6, 10))
    store.append(agent, events(1, 5))
    # A retried archive activity writes the same rows again; the first write stands.
    store.append(agent, events(4, 8, text="other"))
    assert store.between(agent, 0, 10) == events(1, 10)
    assert store.between(agent, 3, 7) == events(4, 7)
    assert store.between(agent, 10, 20) == []
    assert store.between(uuid.uuid4().hex, 0, 10) == []


def test_turns_in_order_and_idempotent(store: TranscriptStore) -> None:
    agent = uuid.uuid4().hex
    turns = [
        Turn(f"m-{i}", f"question {i}", outcome=TurnOutcome.COMPLETED, reply=f"answer {i}")
        for i in range(6)
    ]
    store.append_turns(agent, 3, turns[3:])
    store.append_turns(agent, 0, turns[:4])
    assert store.turns(agent, 6) == turns
    assert store.turns(agent, 2) == turns[:2]


def test_a_second_process_reads_what_the_first_wrote(location: str, store: TranscriptStore) -> None:
    """The worker writes, the gateway reads: two stores on one location."""
    agent = uuid.uuid4().hex
    reader = open_transcript_store(location)
    try:
        store.append(agent, events(1, 3))
        assert reader.between(agent, 0, 3) == events(1, 3)
    finally:
        reader.close()


def test_postgres_restart(postgres: PostgresServer) -> None:
    store = open_transcript_store(postgres.url)
    agent = uuid.uuid4().hex
    try:
        store.append(agent, events(1, 2))
        postgres.stop("immediate")
        postgres.resume()
        # The pool replaced the broken connection: no error reaches the caller.
        store.append(agent, events(3, 4))
        assert store.between(agent, 0, 4) == events(1, 4)
    finally:
        store.close()

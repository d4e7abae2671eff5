"""Engram as docker-compose deploys it: separate worker and gateway processes, transcripts in
PostgreSQL. A long-lived agent's archive lands in the database, any gateway reads it, and a
database restart in the middle of a conversation loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram.transcripts import open_transcript_store
from engram.v1 import agent_pb2
from tests.cluster import Cluster
from tests.conftest import create_agent, finals, user_message, without_time
from tests.fake_llm import FakeLLM
from tests.postgres import PostgresServer


@pytest.fixture
def cluster(tmp_path: Path, llm: FakeLLM, postgres: PostgresServer) -> Iterator[Cluster]:
    deployed = Cluster(tmp_path, llm.url, postgres.url, ENGRAM_MAX_HISTORY_EVENTS="150")
    try:
        deployed.start_temporal()
        deployed.start_worker()
        yield deployed
    finally:
        deployed.stop()


def test_long_agent_with_transcripts_in_postgres(
    cluster: Cluster, llm: FakeLLM, postgres: PostgresServer, tmp_path: Path
) -> None:
    llm.reply = lambda messages: f"reply to {messages[-1]['content']}: " + "tok " * 100
    # Paced, each token is an event of its own (unpaced, a fast model's tokens are coalesced),
    # so the agent's events pile up past what its state keeps and go to the archive.
    llm.token_delay = 0.002
    _, first = cluster.start_gateway()
    _, second = cluster.start_gateway()
    stub = cluster.stub(first)
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=600))
    contents = [f"message {i}" for i in range(32)]
    seen: list[agent_pb2.ServerMessage] = []
    for i in range(0, len(contents), 4):
        if i == 16:
            # The database goes away for a few seconds while the conversation goes on.
            postgres.stop("immediate")
            threading.Timer(3.0, postgres.resume).start()
        seen += stub.Chat(iter(user_message(agent_id, c) for c in contents[i : i + 4]), timeout=90)

    assert finals(seen) == [llm.reply([{"content": c}]) for c in contents]
    assert [m.sequence_id for m in seen] == list(range(1, len(seen) + 1))

    other = cluster.stub(second)
    replayed = list(other.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=30))
    assert [without_time(m) for m in replayed] == [without_time(m) for m in seen]
    turns = other.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [t.user for t in turns] == contents

    # The archive is in PostgreSQL, and nowhere else.
    store = open_transcript_store(postgres.url)
    try:
        archived_turns = store.turns(agent_id, len(contents))
        archived_events = store.between(agent_id, 0, seen[-1].sequence_id)
    finally:
        store.close()
    assert archived_turns and [t.user for t in archived_turns] == contents[: len(archived_turns)]
    assert len(archived_events) > 500
    assert [e.seq for e in archived_events] == list(range(1, len(archived_events) + 1))
    assert not (tmp_path / "transcripts.db").exists()

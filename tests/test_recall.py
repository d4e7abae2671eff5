"""Recall: an agent finds, verbatim, what was compacted out of its prompt long ago; only in its
own transcript; and with encryption on the store holds none of the words it searched."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engram.codec.encrypted_store import EncryptedTranscriptStore
from engram.codec.keyring import Keyring
from engram.transcripts import TranscriptStore, open_transcript_store
from engram.transcripts.search import SearchQuery
from engram.v1 import agent_pb2
from engram.vocabulary import EventKind
from engram.workflows.types import Event, Turn
from tests.conftest import chat, create_agent, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM, ToolUse, text_of_content
from tests.postgres import PostgresServer
from tests.test_encryption_e2e import KEYS, stored_bytes
from tests.test_terminal import ENGRAM

SUMMARIZER = "You keep the memory of a long conversation"


def model(messages: list[dict[str, Any]]) -> str | ToolUse:
    """Summarizes in a line; `recall <words>` calls the tool; a tool's result is quoted back."""
    if SUMMARIZER in text_of_content(messages[0]["content"]):
        return "They made small talk."
    last = messages[-1]
    if last["role"] == "tool":
        return f"Found: {last['content']}"
    content = text_of_content(last["content"])
    if content.startswith("recall "):
        return ToolUse([("recall", json.dumps({"query": content.removeprefix("recall ")}))])
    return "Noted."


def converse(stub: Any, agent_id: str, fact: str, turns: int) -> None:
    """The fact first, then small talk until it is long compacted away."""
    chat(stub, agent_id, f"Please keep this in mind: {fact}.")
    filler = [f"small talk {i}: the weather is mild and the tea warm" for i in range(turns)]
    for i in range(0, len(filler), 4):
        chat(stub, agent_id, *filler[i : i + 4])


def small_agent(stub: Any, **config: Any) -> str:
    return create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=200, **config))


def offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", [])]


@pytest.fixture(scope="module")
def engine(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    started = Engine(tmp_path_factory.mktemp("recall"), fake_llm.url).start()
    yield started
    started.stop()


def test_a_fact_compacted_away_long_ago_comes_back_verbatim(engine: Engine, llm: FakeLLM) -> None:
    llm.reply = model
    stub = engine.stub()
    code = f"quince{uuid.uuid4().hex[:10]}"
    fact = f"the vault code is {code}"
    agent_id = small_agent(stub)
    converse(stub, agent_id, fact, turns=24)

    answer = finals(chat(stub, agent_id, "recall vault code"))
    asked = llm.requests_for("recall vault code")[0]
    # The fact is out of the model's prompt (neither verbatim nor in the summary)...
    assert "recall" in offered(asked)
    assert not any(code in text_of_content(m["content"]) for m in asked["messages"])
    # ...and back through recall, verbatim, with its place in the stream.
    assert fact in answer[0]
    assert "[seq 1, " in answer[0]

    # The terminal's search: the same hit, by the gateway.
    found = stub.SearchHistory(agent_pb2.SearchHistoryRequest(agent_id=agent_id, query=code))
    assert [h.kind for h in found.hits][-1] == EventKind.USER_MESSAGE
    assert any(fact in h.excerpt for h in found.hits)
    later = stub.SearchHistory(
        agent_pb2.SearchHistoryRequest(agent_id=agent_id, query=code, from_sequence=1)
    )
    assert all(h.sequence_id > 1 for h in later.hits)

    # Another agent finds nothing of it, through its tool or the gateway.
    other = small_agent(stub)
    told = finals(chat(stub, other, f"recall {code}"))
    assert told == [f"Found: nothing found for {code!r}"]
    mine = stub.SearchHistory(agent_pb2.SearchHistoryRequest(agent_id=other, query=code)).hits
    assert mine and not any("vault" in h.excerpt for h in mine)

    # And from the terminal.
    grep = subprocess.run(
        [ENGRAM, "history", agent_id, "--grep", "vault code", "--address", engine.address],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert grep.returncode == 0, grep.stderr
    assert fact in grep.stdout and "user_message" in grep.stdout


def test_recall_can_be_turned_off(engine: Engine, llm: FakeLLM) -> None:
    llm.reply = model
    stub = engine.stub()
    agent_id = small_agent(stub, disable_recall=True)
    chat(stub, agent_id, "no recall here")
    assert "recall" not in offered(llm.requests_for("no recall here")[0])
    assert "remember" in offered(llm.requests_for("no recall here")[0])


def test_with_encryption_recall_works_and_the_store_holds_no_plaintext(
    tmp_path: Path, llm: FakeLLM
) -> None:
    llm.reply = model
    code = f"medlar{uuid.uuid4().hex[:10]}"
    encrypted = Engine(tmp_path, llm.url, ENGRAM_ENCRYPTION_KEYS=KEYS).start()
    try:
        stub = encrypted.stub()
        agent_id = small_agent(stub)
        converse(stub, agent_id, f"the locker code is {code}", turns=8)
        answer = finals(chat(stub, agent_id, "recall locker code"))
        assert f"the locker code is {code}" in answer[0]
    finally:
        encrypted.stop()
    assert code.encode() not in stored_bytes(tmp_path)


# --- the stores' own engines ------------------------------------------------------------


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


def said(seq: int, text: str, kind: str = EventKind.USER_MESSAGE, **fields: Any) -> Event:
    return Event(seq=seq, kind=kind, text=text, ts=1000.0 + seq, **fields)


def test_search_ranks_pages_and_keeps_to_the_agent(store: TranscriptStore) -> None:
    agent, other = uuid.uuid4().hex, uuid.uuid4().hex
    store.append(
        agent,
        [
            said(1, "Blue herons nest by the lake."),
            said(2, "herons", kind=EventKind.FINAL_ANSWER),
            said(3, "a piece of herons text", kind=EventKind.TEXT),
            said(4, '{"query": "herons"}', kind=EventKind.TOOL_CALL, code="recall", call_id="c4"),
            said(5, "1 match: herons", kind=EventKind.TOOL_RESULT, call_id="c4"),
        ]
        + [said(seq, f"herons again {seq}") for seq in range(6, 30)],
    )
    store.append(other, [said(1, "herons of another agent")])

    def search(**fields: Any) -> list[int]:
        return [h.seq for h in store.search(SearchQuery(agent_id=agent, **fields)).hits]

    first = store.search(SearchQuery(agent_id=agent, text="HERONS"))
    assert len(first.hits) == 10 and first.more
    # The closest match first; streamed pieces and recall's own call and result never.
    assert first.hits[0].seq == 2
    everything = {s for page in range(3) for s in search(text="herons", offset=page * 10)}
    assert everything == {1, 2, *range(6, 30)}
    assert search(text="blue herons lake") == [1]
    assert search(text="herons", from_sequence=27) == [29, 28]
    assert set(search(text="herons", since=1010.0, until=1012.0)) == {10, 11}
    assert search(text="heron") == []
    assert search(text='" OR *') == []


def test_encrypted_rows_stay_out_of_the_index(tmp_path: Path) -> None:
    path = tmp_path / "transcripts.db"
    store = EncryptedTranscriptStore(open_transcript_store(path), Keyring.parse(KEYS))
    agent = uuid.uuid4().hex
    word = f"kumquat{uuid.uuid4().hex[:8]}"
    store.append(agent, [said(1, f"my fruit is {word}"), said(2, "nothing here")])
    hits = store.search(SearchQuery(agent_id=agent, text=word)).hits
    assert [(h.seq, h.excerpt) for h in hits] == [(1, f"my fruit is {word}")]
    assert not store.search(SearchQuery(agent_id=uuid.uuid4().hex, text=word)).hits
    store.close()
    assert word.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


def test_recall_finds_nothing_after_a_fork_or_rewind_point(engine: Engine, llm: FakeLLM) -> None:
    llm.reply = model
    stub = engine.stub()
    code = f"sloe{uuid.uuid4().hex[:10]}"
    fact = f"the gate code is {code}"
    agent_id = create_agent(stub)
    point = chat(stub, agent_id, "Good morning.")[-1].sequence_id
    chat(stub, agent_id, f"Please keep this in mind: {fact}.")
    chat(stub, agent_id, "small talk: the weather is mild")
    # Found before: a search moves the events it covers to the store, which must forget them.
    assert fact in finals(chat(stub, agent_id, "recall gate code"))[0]
    fork_id = stub.ForkAgent(agent_pb2.ForkAgentRequest(agent_id=agent_id, at_sequence=point))
    rewound = stub.RewindAgent(agent_pb2.RewindAgentRequest(agent_id=agent_id, to_sequence=point))

    for agent in (fork_id.agent_id, agent_id):
        found = stub.SearchHistory(agent_pb2.SearchHistoryRequest(agent_id=agent, query=code))
        assert found.hits == []
        assert finals(chat(stub, agent, f"recall {code}")) == [f"Found: nothing found for {code!r}"]
    # The branch holds the forgotten turns, and finds them.
    answer = finals(chat(stub, rewound.branch_agent_id, "recall gate code"))
    assert fact in answer[0]


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "encrypted"])
def test_a_fork_s_copy_holds_the_rows_and_words_up_to_its_point(
    store: TranscriptStore, sealed: bool
) -> None:
    if sealed:
        store = EncryptedTranscriptStore(store, Keyring.parse(KEYS))
    source, fork = uuid.uuid4().hex, uuid.uuid4().hex
    store.append(source, [said(seq, f"otters {seq} swim") for seq in range(1, 21)])
    turns = [Turn(message_id=f"m{i}", user=f"otters {i}") for i in range(5)]
    store.append_turns(source, 0, turns)

    for _ in range(2):  # a copy made again changes nothing
        store.copy_through(source, fork, 12, 3)
    assert [e.text for e in store.between(fork, 0, 100)] == [
        f"otters {s} swim" for s in range(1, 13)
    ]
    assert store.turns(fork, 100) == turns[:3]
    hits = [
        h.seq
        for page in range(2)
        for h in store.search(SearchQuery(agent_id=fork, text="otters swim", offset=page * 10)).hits
    ]
    assert sorted(hits) == list(range(1, 13))
    # The source keeps everything.
    assert len(store.between(source, 0, 100)) == 20 and store.turns(source, 100) == turns

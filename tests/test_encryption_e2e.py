"""Nothing readable at rest: with encryption keys set, neither Temporal's database file nor the
transcript store holds the user's words or the model's reply; without keys they would be there."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx2

from engram.v1 import agent_pb2
from tests.conftest import chat, create_agent, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM

KEYS = "k1:" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64


def stored_bytes(data_dir: Path) -> bytes:
    """Every database file the engine wrote (Temporal's SQLite and the transcript store)."""
    return b"".join(p.read_bytes() for p in data_dir.rglob("*.db*") if p.is_file())


def converse(data_dir: Path, llm: FakeLLM, keys: str = "") -> tuple[str, ...]:
    secret_word = f"zebra{uuid.uuid4().hex[:12]}"
    reply_word = f"okapi{uuid.uuid4().hex[:12]}"
    http_word = f"lemur{uuid.uuid4().hex[:12]}"
    file_word = f"tapir{uuid.uuid4().hex[:12]}"
    # A long reply: its stream messages go to the transcript store too.
    llm.reply = lambda messages: f"{reply_word} " + "tok " * 600
    engine = (
        Engine(data_dir, llm.url, ENGRAM_ENCRYPTION_KEYS=keys)
        if keys
        else Engine(data_dir, llm.url)
    ).start()
    try:
        stub = engine.stub()
        agent_id = create_agent(stub, goal="Keep secrets.")
        said = chat(stub, agent_id, f"The password is {secret_word}.")
        assert finals(said)[0].startswith(reply_word)
        assert finals(chat(stub, agent_id, "Again?"))[0].startswith(reply_word)
        turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
        # The engine itself reads it all back.
        assert turns[0].user == f"The password is {secret_word}."
        replayed = list(
            stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True))
        )
        assert replayed[0].user_message.content == f"The password is {secret_word}."
        # The HTTP API (and the console on it) reads and writes through the same gateway.
        with httpx2.Client(base_url=engine.http_url, timeout=60) as http:
            attachment = {
                "name": "note.txt",
                "mime_type": "text/plain",
                "data": base64.b64encode(f"The vault code is {file_word}.".encode()).decode(),
            }
            body = {"content": f"Over HTTP: {http_word}", "attachments": [attachment]}
            sent = http.post(f"/agents/{agent_id}/messages", json=body)
            assert sent.status_code == 200, sent.text
            assert sent.json()["messages"][-1]["final_answer"]["content"].startswith(reply_word)
            history = http.get(f"/agents/{agent_id}/history")
            assert f"Over HTTP: {http_word}" in history.text
        (asked,) = llm.requests_for(http_word)
        assert file_word in str(asked["messages"])
    finally:
        engine.stop()
    return secret_word, reply_word, http_word, file_word


def test_encrypted_at_rest(tmp_path: Path, llm: FakeLLM) -> None:
    words = converse(tmp_path / "encrypted", llm, KEYS)
    stored = stored_bytes(tmp_path / "encrypted")
    assert len(stored) > 100_000
    for word in words:
        assert word.encode() not in stored, word
    # The control: the same conversation without keys is there in plain text.
    words = converse(tmp_path / "plain", llm)
    plain = stored_bytes(tmp_path / "plain")
    assert all(word.encode() in plain for word in words), [
        w for w in words if w.encode() not in plain
    ]

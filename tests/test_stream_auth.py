"""An open Chat stream stays bound to its key: revoked or expired, the stream ends.

A real engine; keys from `engram keys create`, revoked with `engram keys revoke`. Streams opened
before the revocation or expiry are ended with UNAUTHENTICATED within 2 s, whether idle, waiting
on a long turn, or sending a new message (which never reaches the agent).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from engram.auth import keys
from engram.v1 import agent_pb2
from tests.conftest import eventually, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM
from tests.secured_streams import LONG_TURN, OpenStream, secured_engine
from tests.test_auth import bearer, create_key, engram_cli

# The key ring reads the store every second and streams check every half second; what is left
# is the CLI's own write and the test's polling on a shared machine.
WITHIN = 2.0
SLACK = 0.5


@pytest.fixture(scope="module")
def engine(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    started, _ = secured_engine(tmp_path_factory.mktemp("stream-auth"), fake_llm.url, {})
    yield started
    started.stop()


def new_agent(engine: Engine, key: str, model: str = "m") -> str:
    request = agent_pb2.CreateAgentRequest(goal="g", model=model)
    agent_id: str = engine.stub().CreateAgent(request, metadata=bearer(key)).agent_id
    return agent_id


def answered(stream: OpenStream, count: int) -> None:
    eventually(
        lambda: sum(m.HasField("final_answer") for m in stream.reader.messages) >= count,
        timeout=20,
        what=f"{count} answers",
    )


def test_revocation_ends_open_streams(engine: Engine) -> None:
    key = create_key(engine.data_dir, "acme")
    quick, slow = new_agent(engine, key), new_agent(engine, key, LONG_TURN)
    idle, waiting = OpenStream(engine.stub(), key), OpenStream(engine.stub(), key)
    idle.send(user_message(quick, "hello"))
    answered(idle, 1)  # a stream that has done its work and now sends nothing
    waiting.send(user_message(slow, "take your time"))  # a turn still running when revoked
    time.sleep(0.5)
    parsed = keys.parse(key)
    assert parsed is not None
    done = engram_cli("keys", "revoke", parsed[0], "--data-dir", str(engine.data_dir))
    assert done.returncode == 0, done.stderr
    revoked = time.monotonic()
    for stream in (idle, waiting):
        code, details, at = stream.ended(timeout=WITHIN + SLACK + 5)
        assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in details, (code, details)
        assert at - revoked < WITHIN + SLACK, f"ended {at - revoked:.2f} s after the revocation"
        stream.close()


def test_expired_key_ends_streams_and_runs_nothing(engine: Engine) -> None:
    key = create_key(engine.data_dir, "acme", "--expires", "5s")
    made = time.monotonic()
    agent = new_agent(engine, key)
    stream = OpenStream(engine.stub(), key)
    stream.send(user_message(agent, "before"))
    answered(stream, 1)
    # Past expiry, before the periodic check can act: the message itself is refused.
    time.sleep(max(0.0, 5.05 - (time.monotonic() - made)))
    stream.send(user_message(agent, "after expiry"))
    code, details, at = stream.ended(timeout=WITHIN + SLACK + 5)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "expired" in details, (code, details)
    assert at - made < 5 + WITHIN + SLACK
    stream.close()
    # The agent never saw the message sent after expiry (read with a key that still works).
    other = create_key(engine.data_dir, "acme")
    history = engine.stub().GetHistory(
        agent_pb2.GetHistoryRequest(agent_id=agent), metadata=bearer(other)
    )
    inputs = [t.user for t in history.turns]
    assert "before" in str(inputs) and "after expiry" not in str(inputs), inputs

"""Messages on Chat streams are metered and bounded as they arrive, not when they are handled.

A real engine with keys and small limits: every message counts against its key's rate, and each
stream and each agent has a bound on inputs read but not yet answered. Past any of them the
stream ends with RESOURCE_EXHAUSTED at once, even while a long turn runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import pytest

from engram.v1 import agent_pb2
from tests.conftest import user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM
from tests.secured_streams import LONG_TURN, OpenStream, secured_engine
from tests.test_auth import bearer, create_key

# A burst of 20, refilled slowly: the flood's 24 messages pass it however slowly a loaded machine
# reads them within PROMPTLY, while each other test's few messages never come near it.
BURST = 20
RATE = 1  # per second
STREAM_INPUTS = 3
AGENT_INPUTS = 4
PROMPTLY = 3.0  # seconds; the turns these inputs wait behind take 8


@dataclass
class Bounded:
    engine: Engine
    keys: dict[str, str]

    def agent(self, model: str = LONG_TURN) -> str:
        request = agent_pb2.CreateAgentRequest(goal="g", model=model)
        stub = self.engine.stub()
        agent_id: str = stub.CreateAgent(request, metadata=bearer(self.keys["maker"])).agent_id
        return agent_id

    def stream(self, key: str) -> OpenStream:
        return OpenStream(self.engine.stub(), self.keys[key])


@pytest.fixture(scope="module")
def bounded(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bounded]:
    data_dir = tmp_path_factory.mktemp("input-bounds")
    names = ("maker", "flood", "stream", "agent")
    with ThreadPoolExecutor(len(names)) as pool:
        made = {name: pool.submit(create_key, data_dir, "acme") for name in names}
    keys = {name: future.result() for name, future in made.items()}
    engine, _ = secured_engine(
        data_dir,
        fake_llm.url,
        {
            "ENGRAM_RATE_LIMIT": str(RATE),
            "ENGRAM_RATE_BURST": str(BURST),
            "ENGRAM_MAX_STREAM_INPUTS": str(STREAM_INPUTS),
            "ENGRAM_MAX_AGENT_INPUTS": str(AGENT_INPUTS),
            # Every key here is acme's: its tenant's share is tested on its own
            # (tests/test_tenant_share.py).
            "ENGRAM_MAX_TENANT_INPUTS": "0",
        },
    )
    yield Bounded(engine, keys)
    engine.kill()  # its agents still wait on long turns: nothing to shut down gracefully


def refused(stream: OpenStream, started: float, words: str) -> None:
    code, details, at = stream.ended(timeout=PROMPTLY + 5)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and words in details, (code, details)
    assert at - started < PROMPTLY, f"refused after {at - started:.2f} s"


def test_every_stream_message_counts_against_the_rate(bounded: Bounded) -> None:
    agents = [bounded.agent() for _ in range(8)]
    streams = [bounded.stream("flood") for _ in agents]
    started = time.monotonic()
    for _ in range(STREAM_INPUTS):  # 24 messages, within every bound but the rate's burst
        for agent, stream in zip(agents, streams, strict=True):
            stream.send(user_message(agent, "flood"))
    time.sleep(max(0.0, PROMPTLY - (time.monotonic() - started)))
    ended = [s for s in streams if s.reader.done.is_set()]
    assert ended, "no stream was refused"
    for stream in ended:
        code, details, _ = stream.ended(timeout=0)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in details, details
    for stream in streams:
        stream.close()


def test_unanswered_inputs_per_stream(bounded: Bounded) -> None:
    agent = bounded.agent()
    stream = bounded.stream("stream")
    started = time.monotonic()
    for n in range(STREAM_INPUTS + 1):
        stream.send(user_message(agent, f"queued {n}"))
    refused(stream, started, f"at most {STREAM_INPUTS}")
    assert "stream" in (stream.reader.error.details() or "")  # type: ignore[union-attr]
    stream.close()


def test_unanswered_inputs_per_agent(bounded: Bounded) -> None:
    agent = bounded.agent()
    first, second = bounded.stream("agent"), bounded.stream("agent")
    for n in range(STREAM_INPUTS):
        first.send(user_message(agent, f"first {n}"))
    time.sleep(1.0)
    started = time.monotonic()
    for n in range(AGENT_INPUTS - STREAM_INPUTS + 1):
        second.send(user_message(agent, f"second {n}"))
    refused(second, started, f"at most {AGENT_INPUTS} per agent")
    assert not first.reader.done.is_set()  # the streams within their bounds go on
    first.close()
    second.close()

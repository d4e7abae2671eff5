"""What the stream tests share: an engine that requires keys, and a Chat stream sent by hand."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import Reader
from tests.engine import Engine
from tests.test_auth import bearer, create_key

LONG_TURN = "bench-ttft8000-tokens3"
"""A model whose first token comes after 8 s: a turn that outlasts what a test waits for."""


def secured_engine(data_dir: Path, llm_url: str, env: dict[str, str]) -> tuple[Engine, str]:
    """A started engine whose store holds a key (so every call needs one), and that key."""
    key = create_key(data_dir, "acme")
    engine = Engine(data_dir, llm_url)
    engine.env.update(env)
    return engine.start(), key


class OpenStream:
    """A Chat stream whose messages the test sends one by one, read in the background."""

    def __init__(self, stub: agent_pb2_grpc.AgentServiceStub, key: str) -> None:
        self._outbox: queue.Queue[agent_pb2.ClientMessage | None] = queue.Queue()
        self.reader = Reader(stub.Chat(self._requests(), metadata=bearer(key), timeout=60))
        self.ended_at = 0.0

    def _requests(self) -> Iterator[agent_pb2.ClientMessage]:
        while (message := self._outbox.get()) is not None:
            yield message

    def send(self, message: agent_pb2.ClientMessage) -> None:
        self._outbox.put(message)

    def close(self) -> None:
        self._outbox.put(None)

    def ended(self, timeout: float) -> tuple[grpc.StatusCode, str, float]:
        """How the stream ended and when (monotonic); fails if it is still open after `timeout`."""
        assert self.reader.done.wait(timeout), "the stream is still open"
        error = self.reader.error
        details = error.details() if error is not None else ""
        return self.reader.status, details or "", time.monotonic()

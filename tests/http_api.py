"""What the HTTP API tests share: an engine whose store holds two tenants' keys, `engram http`
as a process of its own (to kill), and a server-sent-event reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from tests.engine import Engine, free_port
from tests.test_auth import create_key
from tests.workflow_harness import TEST_TOOLS

RELAY_SECRET = "http-api-test-relay-secret"


@dataclass
class Tenants:
    engine: Engine
    acme: str  # API keys
    globex: str

    @property
    def url(self) -> str:
        return self.engine.http_url


def tenants_engine(data_dir: Path, llm_url: str) -> Tenants:
    acme = create_key(data_dir, "acme")
    globex = create_key(data_dir, "globex")
    engine = Engine(
        data_dir,
        llm_url,
        ENGRAM_RELAY_SECRET=RELAY_SECRET,
        ENGRAM_TOOLS=TEST_TOOLS,
        ENGRAM_TEST_EFFECTS=str(data_dir / "effects.log"),
    ).start()
    return Tenants(engine, acme, globex)


def client(url: str, key: str | None, **options: Any) -> httpx2.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx2.Client(base_url=url, headers=headers, timeout=60, **options)


class HttpProcess:
    """`engram http` against an engine's Temporal and store, on ports of its own."""

    def __init__(self, engine: Engine, http_port: int | None = None, *extra: str) -> None:
        self.engine = engine
        self.http_port = http_port or free_port()
        self.extra = extra
        self.log_path = engine.data_dir / f"http-{self.http_port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1"

    def start(self, timeout: float = 30.0) -> HttpProcess:
        command = [
            sys.executable,
            "-m",
            "engram.cli",
            "http",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--http-port",
            str(self.http_port),
            "--temporal-address",
            f"127.0.0.1:{self.engine.temporal_port}",
            "--transcript-db",
            str(self.engine.data_dir / "transcripts.db"),
            *self.extra,
        ]
        log = open(self.log_path, "ab")
        offset = log.tell()
        env = {**os.environ, "ENGRAM_RELAY_SECRET": RELAY_SECRET}
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while b"HTTP API on" not in self.log_path.read_bytes()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"engram http did not start:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class SseEvent:
    event_id: str | None
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def sse_events(lines: Iterator[str]) -> Iterator[SseEvent]:
    event_id = event = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseEvent(event_id, event, "\n".join(data))
            event_id = event = None
            data = []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))

"""Runs `engram dev` as a real process group, for tests and benchmarks to talk to and to kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from engram.processes import free_port as free_port  # re-exported for tests and benches
from engram.v1 import agent_pb2_grpc


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Engine:
    def __init__(
        self,
        data_dir: Path,
        llm_url: str | None,
        port: int | None = None,
        *,
        cwd: Path | None = None,
        extra_args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        self.data_dir = data_dir
        self.llm_url = llm_url
        self.port = port or free_port()
        self.temporal_port = free_port()
        self.ui_port = free_port()
        self.http_port = free_port()
        self.env = env
        self.cwd = cwd
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "engine.log"
        self._channel: grpc.Channel | None = None

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    @property
    def http_url(self) -> str:
        """The HTTP API's base URL, as OpenAI's clients take it."""
        return f"http://localhost:{self.http_port}/v1"

    def start(self, timeout: float = 60.0) -> Engine:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        if self.llm_url is not None:
            env["ENGRAM_LLM_BASE_URL"] = self.llm_url
        command = [
            sys.executable,
            "-m",
            "engram.cli",
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--temporal-port",
            str(self.temporal_port),
            "--ui-port",
            str(self.ui_port),
            "--http-port",
            str(self.http_port),
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        offset = log.tell()
        self.process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=self.cwd,
        )
        deadline = time.monotonic() + timeout
        while b"Engram is running" not in self.log_path.read_bytes()[offset:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"engine did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def stub(self) -> agent_pb2_grpc.AgentServiceStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.address)
        return agent_pb2_grpc.AgentServiceStub(self._channel)

    def kill(self) -> None:
        """SIGKILL the whole process group: engine, worker, gateway and Temporal server."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._close_channel()

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout)
        finally:
            self._close_channel()
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        return code

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def children(parent: int) -> list[tuple[int, str]]:
    """(pid, command line) of each live child process of `parent`, from /proc."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.append((int(proc.name), cmdline))
    return found

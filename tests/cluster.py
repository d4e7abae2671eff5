"""Engram as separate processes (Temporal server, workers, gateways), each killable on its own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from engram.dev_server import start_dev_server
from engram.v1 import agent_pb2_grpc
from tests.engine import free_port


class Cluster:
    def __init__(self, data_dir: Path, llm_url: str, transcript_db: str = "", **env: str) -> None:
        self.data_dir = data_dir
        self.llm_url = llm_url
        self.transcript_db = transcript_db or str(data_dir / "transcripts.db")
        self.env = env
        self.temporal_port = free_port()
        self.temporal: subprocess.Popen[bytes] | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self._count = 0

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def start_temporal(self) -> None:
        for _ in range(3):
            self.temporal = start_dev_server(self.data_dir, self.temporal_port, free_port())
            try:
                _wait_for(self._temporal_up_or_gone, what="Temporal")
            except RuntimeError:
                break
            if self.temporal.poll() is None:
                return
            # A port picked free can be taken before the server binds it (by another server's
            # random HTTP or metrics port). Before anything knows its address, pick another.
            if self.processes:
                break
            self.temporal_port = free_port()
        log = (self.data_dir / "temporal.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Temporal did not start:\n{log}")

    def _temporal_up_or_gone(self) -> bool:
        assert self.temporal is not None
        return _port_open(self.temporal_port) or self.temporal.poll() is not None

    def kill_temporal(self) -> None:
        assert self.temporal is not None
        self.temporal.kill()
        self.temporal.wait()

    def _spawn(self, role: str, *args: str, ready: str) -> subprocess.Popen[bytes]:
        self._count += 1
        log = self.data_dir / f"{role}-{self._count}.log"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engram.cli",
                role,
                "--temporal-address",
                self.temporal_address,
                "--transcript-db",
                self.transcript_db,
                *args,
            ],
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "ENGRAM_LLM_BASE_URL": self.llm_url, **self.env},
        )
        self.processes.append(process)
        _wait_for(lambda: process.poll() is None and _log_has(log, ready), what=f"{role} to start")
        return process

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        return self._spawn("worker", *args, ready="worker on")

    def start_gateway(self, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
        port = port or free_port()
        process = self._spawn(
            "gateway", "--port", str(port), "--host", "127.0.0.1", ready="gateway on"
        )
        return process, f"127.0.0.1:{port}"

    @staticmethod
    def stub(address: str) -> agent_pb2_grpc.AgentServiceStub:
        return agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(address))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
        if self.temporal is not None and self.temporal.poll() is None:
            self.temporal.terminate()
            self.temporal.wait(10)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def _wait_for(check: Callable[[], bool], timeout: float = 60.0, what: str = "start-up") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)

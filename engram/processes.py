"""Child-process plumbing shared by the embedded Temporal, the local model and the tests.

Standard library only, so that tests and benchmarks can use it without importing the engine.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys


def die_with_parent(command: list[str]) -> list[str]:
    """`command`, run so that it is killed when the engine dies, however the engine dies.

    util-linux's setpriv sets the parent-death signal and execs the command. (A preexec_fn could
    do the same from Python, but forking a process that has gRPC threads running is unsafe.)
    """
    setpriv = shutil.which("setpriv")
    if sys.platform != "linux" or setpriv is None:
        return command
    return [setpriv, "--pdeathsig", "KILL", "--", *command]


def free_port() -> int:
    """A loopback port nobody is listening on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_port(
    host: str,
    port: int,
    process: subprocess.Popen[bytes],
    timeout: float,
    what: str = "the Temporal dev server",
) -> None:
    """Until `process` accepts connections on host:port; SystemExit if it dies or takes too long."""
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

"""Running a command in an agent's workspace, inside a bubblewrap sandbox.

The command sees the system's programs read-only (/usr and the links into it, a few files of
/etc), a private /tmp and /proc, and its workspace at /workspace: the only path it can write. It
runs as nobody in its own user, PID, IPC, UTS and network namespaces (no network unless the
operator allows it), with an empty environment but PATH, HOME, LANG, TMPDIR and
PYTHONDONTWRITEBYTECODE (the worker's secrets stay out), and under CPU, memory, file-size and
process limits (prlimit). It is killed, with every process it started, when its time is up. No
bubblewrap, no command: there is no safe fallback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engram.tools.registry import ToolError
from engram.tools.workspace.store import SANDBOX_PATH

NETWORK_ENV = "ENGRAM_WORKSPACE_NETWORK"
CPU_ENV = "ENGRAM_WORKSPACE_CPU_SECONDS"
MEMORY_ENV = "ENGRAM_WORKSPACE_MEMORY_BYTES"
DEFAULT_CPU_SECONDS = 60
DEFAULT_MEMORY_BYTES = 1024 * 1024 * 1024
MAX_PROCESSES = 256
OUTPUT_CHARS = 16_000
# What of /etc programs need to run (dynamic linking, users, time zones, TLS roots), nothing else.
_ETC = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "ssl",
    "ca-certificates",
    "hosts",
    "resolv.conf",
)
_SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


def bwrap() -> str | None:
    return shutil.which("bwrap")


def network_allowed() -> bool:
    return os.environ.get(NETWORK_ENV, "").strip().lower() in ("1", "true", "yes")


def _limit(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


@dataclass(frozen=True)
class Finished:
    exit_code: int | None
    output: str
    timed_out: bool
    seconds: float


def sandbox_command(tree: Path, command: str, file_limit: int) -> list[str]:
    return sandbox_argv(tree, ["/bin/sh", "-c", command], file_limit)


def sandbox_argv(
    tree: Path, argv: list[str], file_limit: int, *, read_only: bool = False
) -> list[str]:
    """The bwrap command line that runs `argv` in the sandbox; with `read_only`, the workspace
    is mounted read-only (a script's changes go through tools: engram.tools.workspace.scripting)."""
    binary = bwrap()
    if binary is None:
        raise ToolError(
            "run_command is disabled: bubblewrap (bwrap) is not installed on this worker, and "
            "commands are never run outside its sandbox"
        )
    args = [binary, "--die-with-parent", "--new-session", "--unshare-all"]
    if network_allowed():
        args.append("--share-net")
    args += ["--uid", "65534", "--gid", "65534"]
    for name in _SYSTEM:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    bind = "--ro-bind" if read_only else "--bind"
    args += [bind, str(tree.resolve()), SANDBOX_PATH, "--chdir", SANDBOX_PATH]
    args += ["--clearenv"]
    for key, value in (
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("HOME", SANDBOX_PATH),
        ("LANG", "C.UTF-8"),
        ("TMPDIR", "/tmp"),
    ):
        args += ["--setenv", key, value]
    prlimit = shutil.which("prlimit") or "/usr/bin/prlimit"
    args += [
        "--",
        prlimit,
        f"--cpu={_limit(CPU_ENV, DEFAULT_CPU_SECONDS)}",
        f"--as={_limit(MEMORY_ENV, DEFAULT_MEMORY_BYTES)}",
        f"--fsize={max(1, file_limit)}",
        f"--nproc={MAX_PROCESSES}",
        "--",
        *argv,
    ]
    return args


def run_sandboxed(tree: Path, command: str, timeout: float, file_limit: int) -> Finished:
    """Run `command` in the sandbox; its output (stdout and stderr together) cut at OUTPUT_CHARS."""
    started = time.monotonic()
    process = subprocess.Popen(
        sandbox_command(tree, command, file_limit),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin"},
        start_new_session=True,
    )
    kept = bytearray()
    total = 0

    def read() -> None:
        nonlocal total
        assert process.stdout is not None
        while chunk := process.stdout.read(65536):
            total += len(chunk)
            if len(kept) < OUTPUT_CHARS * 4:
                kept.extend(chunk[: OUTPUT_CHARS * 4 - len(kept)])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if process.poll() is None or timed_out:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
        reader.join(5)
    text = kept.decode(errors="replace")
    if len(text) > OUTPUT_CHARS or total > len(kept):
        text = text[:OUTPUT_CHARS] + f"\n[output cut: {total:,} bytes in all, the first shown]"
    return Finished(
        exit_code=None if timed_out else process.returncode,
        output=text,
        timed_out=timed_out,
        seconds=round(time.monotonic() - started, 3),
    )

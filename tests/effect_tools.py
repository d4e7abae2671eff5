"""Worker tools with side effects, for the engine tests: each records what it did in a file, as a
real tool records its effect in the system it changes, keyed by the call's idempotency key.

The file is named by ENGRAM_TEST_EFFECTS in the engine's environment. Every attempt is logged
(`attempt <agent>/<call> <n>`); the effect is applied once per key (`effect <agent>/<call>
<label>`), however often the call is attempted, so the tests can tell a retried call from a
doubled effect.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from datetime import timedelta
from pathlib import Path

from engram.tools import ToolContext, tool


def _log() -> Path:
    return Path(os.environ["ENGRAM_TEST_EFFECTS"])


def _apply(ctx: ToolContext, label: str) -> str:
    key = f"{ctx.agent_id}/{ctx.call_id}"
    with open(_log(), "a+") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.seek(0)
        done = any(line.startswith(f"effect {key} ") for line in log)
        log.write(f"attempt {key} {ctx.attempt}\n")
        if not done:
            log.write(f"effect {key} {label}\n")
        log.flush()
    return f"{label}: done"


def effects(agent_id: str, path: Path) -> list[str]:
    """The labels of the effects applied for `agent_id`, in order."""
    if not path.exists():
        return []
    prefix = f"effect {agent_id}/"
    return [
        line.split(" ", 2)[2] for line in path.read_text().splitlines() if line.startswith(prefix)
    ]


def attempts(agent_id: str, path: Path) -> list[str]:
    if not path.exists():
        return []
    prefix = f"attempt {agent_id}/"
    return [line for line in path.read_text().splitlines() if line.startswith(prefix)]


@tool(retries=3)
def record_effect(label: str, ctx: ToolContext) -> str:
    """Record an effect, once per call."""
    return _apply(ctx, label)


@tool(timeout=timedelta(seconds=60), retries=3)
async def slow_effect(label: str, seconds: float, ctx: ToolContext) -> str:
    """Work for `seconds` (heartbeating), then record an effect, once per call."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < seconds:
        ctx.heartbeat({"done": round(loop.time() - start, 1)})
        await asyncio.sleep(0.1)
    return _apply(ctx, label)


@tool(requires_confirmation=True, retries=3)
def deploy(service: str, ctx: ToolContext) -> str:
    """Deploy a service to production (asks a person first)."""
    return _apply(ctx, f"deployed {service}")


@tool(read_only=True, fast=True, retries=3)
def fast_read(label: str, seconds: float, ctx: ToolContext) -> str:
    """Read for `seconds` (a fast tool's local activity), logging each attempt; changes nothing."""
    with open(_log(), "a") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(f"attempt {ctx.agent_id}/{ctx.call_id} {ctx.attempt}\n")
    time.sleep(seconds)
    return f"{label}: read"

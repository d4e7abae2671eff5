"""Worker tools for the tests: a module loaded the way a worker loads `--tools` modules.

The tools record what happened to them in module state, which the tests read: the worker runs in
the test's own process.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from datetime import timedelta
from typing import Literal

import pydantic
from temporalio import activity

from engram.tools import ToolContext, ToolError, tool
from engram.tools.builtin import current_time as current_time  # enables the built-in

_lock = threading.Lock()
# call_id -> the attempts that ran it
ATTEMPTS: dict[str, list[int]] = defaultdict(list)
# call_id of every `slow` call that started, and of those that were cancelled
STARTED: set[str] = set()
CANCELLED: set[str] = set()


def attempts_of(call_id: str) -> list[int]:
    with _lock:
        return list(ATTEMPTS[call_id])


class Item(pydantic.BaseModel):
    sku: str
    quantity: int = 1


@tool(read_only=True)
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


@tool(name="place_order", timeout=timedelta(seconds=20), retries=0, requires_confirmation=True)
async def order(
    items: list[Item], ctx: ToolContext, speed: Literal["normal", "express"] = "normal"
) -> str:
    """Order items for delivery.

    Args:
        items: what to order
        speed: how fast it must arrive
    """
    return f"order {ctx.call_id} for {ctx.agent_id}: {len(items)} lines, {speed}"


@tool(retries=2)
def flaky(label: str, ctx: ToolContext) -> str:
    """Fails on the first attempt of every call, then works."""
    with _lock:
        ATTEMPTS[ctx.call_id].append(ctx.attempt)
    if ctx.attempt == 1:
        raise ConnectionError("the backend hiccuped")
    return f"{label}: done on attempt {ctx.attempt} of call {ctx.call_id}"


@tool(retries=1)
async def resumable(ctx: ToolContext) -> str:
    """Gets halfway, fails, and carries on from where it was on the next attempt."""
    if ctx.attempt == 1:
        ctx.heartbeat({"step": 3})
        raise ConnectionError("lost the connection at step 3")
    return f"resumed from {ctx.previous_details}"


@tool(retries=1)
async def broken(ctx: ToolContext) -> str:
    """Always fails."""
    with _lock:
        ATTEMPTS[ctx.call_id].append(ctx.attempt)
    raise RuntimeError("the disk is on fire")


@tool
def refuse(path: str) -> str:
    """Fails in a way no retry can fix."""
    raise ToolError(f"no such file: {path}")


@tool(timeout=timedelta(seconds=60))
async def slow(seconds: float, ctx: ToolContext) -> str:
    """Works for `seconds`, reporting progress every 0.2 s."""
    with _lock:
        STARTED.add(ctx.call_id)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        while loop.time() - start < seconds:
            ctx.heartbeat({"done": round(loop.time() - start, 1)})
            await asyncio.sleep(0.2)
    except asyncio.CancelledError:
        with _lock:
            CANCELLED.add(ctx.call_id)
        raise
    return f"worked {seconds} s"


@tool(timeout=timedelta(seconds=1), retries=0)
async def hangs() -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "unreachable"


@tool(read_only=True, fast=True, retries=0)
def fast_lookup(key: str) -> str:
    """Look a key up in a small table held in memory (answers in moments).

    Args:
        key: what to look up
    """
    return f"{key}={len(key)}"


@tool(read_only=True, fast=True, retries=0)
def fast_lookup_remote(key: str) -> str:
    """Like `fast_lookup`, but it cannot answer from the workflow's worker: its fallback answers.

    Args:
        key: what to look up
    """
    if activity.info().is_local:
        raise ConnectionError("this table is not reachable from here")
    return f"{key}={len(key)}"


@tool(name="fast_add", read_only=True, fast=True)
def fast_add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


@tool(read_only=True, fast=True, timeout=timedelta(seconds=60), retries=0)
async def fast_but_slow(seconds: float) -> str:
    """A `fast` tool that is not: it takes `seconds`.

    Args:
        seconds: how long it takes
    """
    await asyncio.sleep(seconds)
    return f"looked for {seconds} s"

"""One tool set on every live worker: a worker whose tools differ from those of the workers that
are running refuses to start, saying what differs and what to do.

Every `tool:<name>` activity goes to Engram's one task queue, where any worker may take it, so a
worker without the tool, or with another version of it, must not be polling it. Two designs were
weighed. A task queue per tool set, recorded per tool in the catalog and carried in each agent's
tools, would let mixed workers coexist, but it ties every agent to the queue of the tool set it
was given: once those workers are gone, each such agent's calls fail until its tools are given
again (an Edit, or a migration of every agent's state at each tool change), and it needs a patched
workflow, a second poller per worker and a catalog per queue. Refusing the mismatched worker keeps
the rule the README already states (every worker runs the same tools) true instead of hoped for,
changes no workflow code and no agent's state, and costs one thing: changing the tools means
stopping the old workers before starting the new (agents wait meanwhile; nothing is lost). What
the check cannot see (two workers with different tools starting at the same instant) is caught at
call time: a worker asked for a tool it lacks fails the call, not retried, naming the tool and
itself (engram.activities.tool_calls), and the model gets that as the call's error result.

How: a worker's Temporal identity ends with a fingerprint of its tools (`tools:<hash>` of its
worker tools' names, schemas and policies, and of its MCP servers' names and addresses, not their
listings, so that a server that is down at start does not change it). A starting worker asks
Temporal for the pollers of Engram's task queue (DescribeTaskQueue). Temporal lists a poller for
minutes after it stopped, with the time its last poll began; an idle live worker polls again at
least every minute, so a poller counts as running if it polled within ALIVE_WINDOW, unless it ran
on this host in a process that no longer exists (a worker restarted with new tools). The published
catalog in the shared store (what workers offered before) is what the message compares against.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from engram.tools.mcp_tools import McpServerSpec
from engram.tools.registry import ToolDescription
from engram.workflows.types import AgentTool

# Temporal's long polls last a minute: a live worker's last poll began at most that long ago.
ALIVE_WINDOW = timedelta(seconds=75)
_IDENTITY = re.compile(r"^(?P<pid>\d+)@(?P<host>\S+) tools:(?P<tools>[0-9a-f]+)$")
# The AgentTool fields a worker's version of a tool decides.
_COMPARED = (
    "function",
    "timeout_seconds",
    "retries",
    "requires_confirmation",
    "read_only",
    "fast",
)


class DifferentTools(Exception):
    """This worker's tools differ from those of workers that are running."""


def fingerprint(tools: Iterable[ToolDescription], servers: Iterable[McpServerSpec]) -> str:
    """A short hash of a worker's tool set: the same tools and MCP servers, the same hash."""
    described = sorted(
        ([t.name, t.function, _policy(t)] for t in tools), key=lambda item: str(item[0])
    )
    addressed = sorted([s.name, s.address] for s in servers)
    text = json.dumps([described, addressed], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _policy(tool: ToolDescription) -> dict[str, object]:
    policy = asdict(tool.policy)
    if not policy["fast"]:
        del policy["fast"]  # the fingerprint workers from before `fast` have for the same tools
    return policy


def worker_identity(tool_set: str) -> str:
    """The identity a worker polls with: Temporal's usual `pid@host`, and its tool set."""
    return f"{os.getpid()}@{socket.gethostname()} tools:{tool_set}"


@dataclass(frozen=True)
class Poller:
    identity: str
    tool_set: str
    # Seconds since its last poll began.
    idle: float


async def other_tool_sets(
    client: Client,
    task_queue: str,
    tool_set: str,
    alive_window: timedelta = ALIVE_WINDOW,
) -> list[Poller]:
    """The running workers on `task_queue` whose tool set is not `tool_set`. Workers that poll
    without a tool set in their identity (from before this check) are not compared."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    now = time.time()
    others = []
    for poller in response.pollers:
        found = _IDENTITY.match(poller.identity)
        if found is None or found["tools"] == tool_set:
            continue
        idle = max(0.0, now - poller.last_access_time.ToMicroseconds() / 1e6)
        if idle > alive_window.total_seconds() or _gone(int(found["pid"]), found["host"]):
            continue
        others.append(Poller(poller.identity, found["tools"], idle))
    return others


def _gone(pid: int, host: str) -> bool:
    """The poller ran on this host in a process that has ended."""
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        return False
    return False


def differences(own: list[AgentTool], published: list[AgentTool]) -> list[str]:
    """How this worker's tools differ from the catalog workers published, one phrase each."""
    theirs = {t.name: t for t in published}
    mine = {t.name: t for t in own}
    changed = [
        name
        for name in sorted(mine.keys() & theirs.keys())
        if any(getattr(mine[name], f) != getattr(theirs[name], f) for f in _COMPARED)
    ]
    phrases = []
    if changed:
        phrases.append(f"another version here (schema or policy): {', '.join(changed)}")
    if only_here := sorted(mine.keys() - theirs.keys()):
        phrases.append(f"only here: {', '.join(only_here)}")
    if not_here := sorted(theirs.keys() - mine.keys()):
        phrases.append(f"published before but not here: {', '.join(not_here)}")
    return phrases


def refusal(tool_set: str, others: list[Poller], differ: list[str], alive_window: timedelta) -> str:
    """What a worker refused for its tools tells the operator: what differs, what to do."""
    workers = "; ".join(f"{p.identity} (polled {p.idle:.0f} s ago)" for p in others)
    compared = "; ".join(differ) if differ else "no difference from the published catalog shows"
    return (
        f"not starting: this worker's tools (tool set {tool_set}) differ from those of workers "
        f"that are running: {workers}. Compared with the catalog they published: {compared}. "
        "Any worker may take any tool call, so every worker must run the same tools (--tools, "
        "ENGRAM_TOOLS, --mcp, ENGRAM_MCP). Start this worker with the same tools as the others; "
        "or, to change the tools, stop every worker first, then start the new ones (agents wait "
        "meanwhile and lose nothing). Temporal lists a stopped worker for a while: one that "
        f"stopped less than {alive_window.total_seconds():.0f} s ago still counts, so if they "
        "have just stopped, start this one again after that."
    )


async def check_same_tools(
    client: Client,
    task_queue: str,
    tool_set: str,
    own: list[AgentTool],
    published: list[AgentTool],
    alive_window: timedelta = ALIVE_WINDOW,
) -> None:
    """Raise DifferentTools, with the message to show, if workers with other tools are running."""
    others = await other_tool_sets(client, task_queue, tool_set, alive_window)
    if others:
        raise DifferentTools(refusal(tool_set, others, differences(own, published), alive_window))

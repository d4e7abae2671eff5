"""`engram agents repair`, run as an operator would against a real engine: a wedged agent is reset
to its last good point and answers again, remembering its conversation; a healthy one is left
alone; an unknown id, or an agent with no good point to go back to, is an error that says why."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.converter import DataConverter

from engram import WORKFLOW_ID_PREFIX
from engram.codec.claim_check import INLINE_BYTES, with_claim_check
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import AgentStatus, Signal, Update
from tests.conftest import chat, create_agent, finals
from tests.engine import Engine
from tests.test_needs_attention import start_wedged_agent

# Past INLINE_BYTES, so the sender's converter moves it to its blob store.
LARGE = "x" * (INLINE_BYTES + 1024)


class ElsewhereBlobs:
    """A blob store no worker shares: what a client misconfigured with its own store writes to.
    The worker cannot find the payload, so every workflow task that carries it fails."""

    def put_blob(self, sha256: str, data: bytes) -> None:
        pass

    def get_blob(self, sha256: str) -> bytes | None:
        return None


async def _send_unreadable(
    engine: Engine,
    agent_id: str,
    send: Callable[[WorkflowHandle[object, object]], Awaitable[object]],
) -> None:
    converter = with_claim_check(DataConverter.default, ElsewhereBlobs())
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}", data_converter=converter)
    handle: WorkflowHandle[object, object] = client.get_workflow_handle(
        WORKFLOW_ID_PREFIX + agent_id
    )
    try:
        # An update is never accepted by a task that fails: give up waiting once it is sent.
        await asyncio.wait_for(send(handle), timeout=3)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        pass


def send_unreadable_update(engine: Engine, agent_id: str) -> None:
    asyncio.run(
        _send_unreadable(
            engine,
            agent_id,
            lambda handle: handle.start_update(
                Update.CHAT, LARGE, id="unreadable", wait_for_stage=WorkflowUpdateStage.ACCEPTED
            ),
        )
    )


def send_unreadable_signal(engine: Engine, agent_id: str) -> None:
    asyncio.run(
        _send_unreadable(engine, agent_id, lambda handle: handle.signal(Signal.UPGRADE, LARGE))
    )


def wait_for_status(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, status: str, timeout: float = 30
) -> agent_pb2.Agent:
    request = agent_pb2.GetAgentRequest(agent_id=agent_id)
    deadline = time.monotonic() + timeout
    while True:
        agent: agent_pb2.Agent = stub.GetAgent(request, timeout=20)
        if agent.status == status:
            return agent
        assert time.monotonic() < deadline, agent
        time.sleep(0.2)


def engram_agents_repair(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "engram.cli",
            "agents",
            "repair",
            "--temporal-address",
            f"127.0.0.1:{engine.temporal_port}",
            "--no-tls",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def a_talked_to_agent(stub: agent_pb2_grpc.AgentServiceStub) -> str:
    agent_id = create_agent(stub)
    reply = chat(stub, agent_id, "Let us look at the 'orders' table.", message_id="m1")
    assert finals(reply) == ["You said: Let us look at the 'orders' table."], reply
    return agent_id


def assert_answers_and_remembers(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> None:
    wait_for_status(stub, agent_id, AgentStatus.IDLE)
    # The fake model names the table only if the earlier turn is still in the agent's prompt.
    reply = chat(stub, agent_id, "What table were we talking about?", message_id="m2")
    assert finals(reply) == ["We were talking about the 'orders' table."], reply
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [t.message_id for t in turns] == ["m1", "m2"], turns


def test_a_wedged_agent_is_repaired_and_remembers_its_conversation(
    engine: Engine, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    agent_id = a_talked_to_agent(stub)
    send_unreadable_update(engine, agent_id)
    wedged = wait_for_status(stub, agent_id, AgentStatus.NEEDS_ATTENTION)
    assert "is not in the blob store" in wedged.attention, wedged

    done = engram_agents_repair(engine, agent_id)

    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"{agent_id}  repaired: its workflow task failed"), line
    assert (
        "is not in the blob store" in line
        and "reset to its last completed workflow task (event " in line
    ), line
    assert "new run " in line, line
    assert_answers_and_remembers(stub, agent_id)

    # Repaired, it is healthy: a second repair leaves it alone.
    again = engram_agents_repair(engine, agent_id)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines() == [
        f"{agent_id}  nothing to repair: its workflow tasks complete"
    ]


def test_a_signal_that_wedges_again_is_dropped_only_when_asked(
    engine: Engine, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    agent_id = a_talked_to_agent(stub)
    send_unreadable_signal(engine, agent_id)
    wait_for_status(stub, agent_id, AgentStatus.NEEDS_ATTENTION)

    # The signal is in history, so the reset re-sends it and the new run fails as the old one did.
    done = engram_agents_repair(engine, agent_id)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"{agent_id}  not repaired: its workflow task failed"), line
    assert "which still fails" in line and "--no-reapply" in line, line
    wait_for_status(stub, agent_id, AgentStatus.NEEDS_ATTENTION)

    dropped = engram_agents_repair(engine, "--no-reapply", agent_id)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    (line,) = dropped.stdout.splitlines()
    assert line.startswith(f"{agent_id}  repaired: "), line
    assert line.endswith("(signals and updates after that point dropped)"), line
    assert_answers_and_remembers(stub, agent_id)


def test_healthy_unknown_and_unrepairable_agents(
    engine: Engine, stub: agent_pb2_grpc.AgentServiceStub
) -> None:
    healthy = a_talked_to_agent(stub)
    unknown = str(uuid.uuid4())
    # Its first task never completes: there is no good point to go back to.
    never_started = asyncio.run(start_wedged_agent(engine))
    wait_for_status(stub, never_started, AgentStatus.NEEDS_ATTENTION)

    done = engram_agents_repair(engine, healthy, unknown, never_started)

    assert done.returncode == 1, done.stdout + done.stderr
    healthy_line, unknown_line, never_line = done.stdout.splitlines()
    assert healthy_line == f"{healthy}  nothing to repair: its workflow tasks complete"
    assert unknown_line == f"{unknown}  not repaired: no agent has this id"
    assert never_line.startswith(f"{never_started}  not repaired: its workflow task failed")
    assert "Failed decoding arguments" in never_line, never_line
    assert "no good point to reset to" in never_line, never_line
    assert stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=healthy)).status == AgentStatus.IDLE

    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=healthy))
    wait_for_status(stub, healthy, AgentStatus.DELETED)
    deleted = engram_agents_repair(engine, healthy)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert deleted.stdout.splitlines() == [f"{healthy}  nothing to repair: it was deleted"]

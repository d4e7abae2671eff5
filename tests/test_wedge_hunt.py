"""Never wedged: thousands of random calls of every AgentService RPC, with SIGKILLs of each
process, leave every agent answering, no workflow task failed, and every message once.

The driver is tests/wedge_driver.py. `ENGRAM_WEDGE_SEED` picks the seed (printed, so a failing run
can be repeated) and `ENGRAM_WEDGE_OPS` the number of operations.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import grpc
import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from engram.gateway.errors import from_temporal
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.fake_llm import FakeLLM
from tests.wedge_driver import Driver, model, stored_markers

SEED = int(os.environ.get("ENGRAM_WEDGE_SEED", "20261204"))
OPS = int(os.environ.get("ENGRAM_WEDGE_OPS", "2000"))


@pytest.mark.chaos
def test_no_sequence_of_calls_wedges_an_agent(tmp_path: Path) -> None:
    print(f"wedge hunt: seed {SEED}, {OPS} operations (ENGRAM_WEDGE_SEED, ENGRAM_WEDGE_OPS)")
    llm = FakeLLM()

    llm.reply = model
    llm.start()
    driver = Driver(tmp_path, llm.url, SEED, OPS)
    started = time.monotonic()
    try:
        driver.start()
        driver.run()
        ran = time.monotonic() - started
        assert driver.parts is not None
        stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(driver.parts.addresses()[0]))
        driver.settle_all(stub)
        agents = asyncio.run(agent_ids(driver.cluster.temporal_address))
        assert set(driver.agents) <= set(agents)
        final_problems: list[str] = []
        checkers = [
            threading.Thread(target=check_agent, args=(driver, stub, a, final_problems))
            for a in agents
        ]
        for t in checkers:
            t.start()
        for t in checkers:
            t.join(max(1.0, started + 600 - time.monotonic()))
        final_problems += [
            f"{t.name}: the final check never ended" for t in checkers if t.is_alive()
        ]
        failed_tasks = asyncio.run(failed_workflow_tasks(driver.cluster.temporal_address))
        print(
            f"wedge hunt: {sum(driver.stats.ops.values())} ops in {ran:.0f} s, "
            f"{len(agents)} agents, {sum(len(a) for a in driver.acked.values())} messages "
            f"acknowledged; ops {dict(driver.stats.ops)}; refusals {dict(driver.stats.codes)}; "
            f"kills {dict(driver.stats.kills)}; seconds per kind "
            f"{ {k: round(v) for k, v in driver.stats.seconds.items()} }; "
            f"total {time.monotonic() - started:.0f} s"
        )
        assert (driver.problems, final_problems, failed_tasks) == ([], [], []), internal_errors(
            tmp_path
        )
        assert sum(driver.stats.ops.values()) >= OPS
        assert set(driver.stats.kills) == {"worker", "gateway", "temporal"}, driver.stats.kills
    finally:
        driver.close()
        llm.stop()


def check_agent(
    driver: Driver, stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, problems: list[str]
) -> None:
    """The agent answers GetAgent and a new message, and holds every acknowledged message once."""
    try:
        check_one(driver, stub, agent_id, problems)
    except Exception as err:
        problems.append(f"{agent_id}: {type(err).__name__}: {err}")


def check_one(
    driver: Driver, stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, problems: list[str]
) -> None:
    info = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id), timeout=30)
    if info.status == "needs_attention":
        problems.append(f"{agent_id} needs attention: {info.attention}")
        return
    if info.status != "deleted":
        marker = f"[wh:final.{agent_id[:8]}]"
        message = agent_pb2.ClientMessage(
            agent_id=agent_id,
            message_id=f"final-{agent_id[:8]}",
            user_input=agent_pb2.UserInput(content=f"still there? {marker}"),
        )
        try:
            replies = list(stub.Chat(iter([message]), timeout=60))
        except grpc.RpcError as err:
            problems.append(
                f"{agent_id} ({info.status}) did not answer: {err.code()} {err.details()}"
            )
            return
        if not replies or not replies[-1].HasField("final_answer"):
            problems.append(f"{agent_id} ended its turn with {replies[-1:] or 'nothing'}")
        driver.ack(agent_id, replies)
    stored = list(
        stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True), timeout=60)
    )
    seqs = [m.sequence_id for m in stored]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{agent_id}: stored sequence ids are not 1..n: {seqs[:40]}")
    found = stored_markers(stored)
    doubled = sorted(m for m, n in found.items() if n > 1)
    lost = sorted(m for m in driver.acked.get(agent_id, set()) if m not in found)
    if doubled or lost:
        shown = [
            (m.sequence_id, m.message_id, m.user_message.content[:60])
            for m in stored
            if m.HasField("user_message") and any(d in m.user_message.content for d in doubled)
        ]
        ops = {d: driver.op_of.get(".".join(d[4:-1].split(".")[:2])) for d in doubled + lost}
        problems.append(
            f"{agent_id}: doubled {doubled[:10]}, lost {lost[:10]}; made by {ops}; stored {shown}"
        )


async def agent_ids(address: str) -> list[str]:
    client = await Client.connect(address)
    ids = set()
    async for execution in client.list_workflows("WorkflowType = 'AgentWorkflow'"):
        ids.add(execution.id.removeprefix("agent-"))
    return sorted(ids)


async def failed_workflow_tasks(address: str) -> list[str]:
    """Every WorkflowTaskFailed event in every run of an agent's workflow, and in other
    workflows (wake-ups) every one but UnhandledCommand: Temporal's way of making a worker look
    again at an event that arrived as the task completed the workflow, not a failing task."""
    client = await Client.connect(address)
    failed = []
    async for execution in client.list_workflows(""):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                attributes = event.workflow_task_failed_event_attributes
                if (
                    execution.workflow_type != "AgentWorkflow"
                    and attributes.cause
                    == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
                ):
                    continue
                failed.append(
                    f"{execution.workflow_type} {execution.id} run {execution.run_id} event "
                    f"{event.event_id}: cause {attributes.cause} {attributes.failure.message[:300]}"
                )
    return failed


def test_a_message_just_after_delete_is_refused_as_deleted(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    """Found by the wedge hunt: a message sent as soon as DeleteAgent returns is answered
    NOT_FOUND ("agent ... not found"), not FAILED_PRECONDITION as for a deleted agent."""
    for how in ("delete", "status"):
        agent_id = stub.CreateAgent(
            agent_pb2.CreateAgentRequest(goal="short-lived", model="fake-model")
        ).agent_id
        list(stub.Chat(iter([_message(agent_id, "hello")]), timeout=30))
        if how == "delete":
            stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id), timeout=15)
        else:
            stub.SetAgentStatus(
                agent_pb2.SetAgentStatusRequest(agent_id=agent_id, status="deleted"), timeout=15
            )
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Chat(iter([_message(agent_id, "after deletion")]), timeout=10))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (
            how,
            refused.value.details(),
        )


def _message(agent_id: str, content: str) -> agent_pb2.ClientMessage:
    return agent_pb2.ClientMessage(
        agent_id=agent_id, user_input=agent_pb2.UserInput(content=content)
    )


def test_an_update_aborted_by_the_closing_workflow_means_deleted() -> None:
    err = RPCError("workflow update was aborted by closing workflow", RPCStatusCode.NOT_FOUND, b"")
    assert from_temporal(err, "a1").code == grpc.StatusCode.FAILED_PRECONDITION


def internal_errors(data_dir: Path) -> str:
    """What the gateways logged of the calls they answered INTERNAL (with the cause)."""
    found = []
    for log in sorted(data_dir.glob("gateway-*.log")):
        lines = log.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if "request for agent" in line and "failed" in line:
                found.append(f"{log.name}: " + "\n".join(lines[i : i + 40]))
    return "\n\n".join(found[:3])


def test_a_connection_to_temporal_cut_mid_call_is_unavailable_not_internal() -> None:
    err = RPCError("transport error: connection reset", RPCStatusCode.UNKNOWN, b"")
    refused = from_temporal(err, "a1")
    assert refused.code == grpc.StatusCode.UNAVAILABLE and "try again" in refused.message

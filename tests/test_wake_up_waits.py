"""A scheduled wake-up waits for its run in workflow code: while the run goes on (here, waiting
for its user) the wake-up holds no activity, and it ends with the run's outcome once the agent
signals it; an agent that never signals (terminated) is found gone by the wake-up's checks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    WorkflowExecutionStatus,
    WorkflowHandle,
)

from engram import WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import Signal, WakeUpOutcome
from engram.workflows.wake_up import schedule_id
from tests.conftest import chat, create_agent, eventually
from tests.engine import Engine
from tests.fake_llm import FakeLLM, ToolUse

Stub = agent_pb2_grpc.AgentServiceStub
# Only the short activities a waiting wake-up may have in flight for a moment.
FOLLOW_RUN = "wake_up_follow_run"
SHORT_ACTIVITIES = {FOLLOW_RUN, "wake_up_check_run"}


def ask_then_finish(messages: list[dict[str, Any]]) -> ToolUse:
    if any("The user answered" in str(m.get("content")) for m in messages):
        return ToolUse([("finish", '{"answer": "Checked the red ones."}')])
    return ToolUse([("ask_user", '{"question": "Which alerts?"}')])


def waiting_for_user(stub: Stub, agent_id: str) -> bool:
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    return bool(agent.HasField("run") and agent.run.state == "waiting_for_user")


async def fire(engine: Engine, agent_id: str, name: str) -> WorkflowHandle[Any, Any]:
    """Fire the schedule now; its wake-up's workflow."""
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    schedule = client.get_schedule_handle(schedule_id(agent_id, name))
    await schedule.trigger()
    deadline = time.monotonic() + 20
    while not (running := (await schedule.describe()).info.running_actions):
        assert time.monotonic() < deadline, "the wake-up never started"
        await asyncio.sleep(0.1)
    [action] = running
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    return client.get_workflow_handle(action.workflow_id)


async def held_activities(wake_up: WorkflowHandle[Any, Any]) -> list[list[str]]:
    """The wake-up's pending activities, looked at several times over a second and a half."""
    samples = []
    for _ in range(6):
        described = await wake_up.describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
        samples.append([a.activity_type.name for a in described.raw_description.pending_activities])
        await asyncio.sleep(0.3)
    return samples


async def follows_the_run(wake_up: WorkflowHandle[Any, Any]) -> bool:
    """Whether the wake-up has told the agent it waits for the run (its follow_run activity
    completed): from then on the agent signals it when the run ends."""
    follows: set[int] = set()
    async for event in wake_up.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == FOLLOW_RUN:
                follows.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            if event.activity_task_completed_event_attributes.scheduled_event_id in follows:
                return True
    return False


async def signalled(wake_up: WorkflowHandle[Any, Any]) -> list[str]:
    return [
        event.workflow_execution_signaled_event_attributes.signal_name
        async for event in wake_up.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]


def schedule(stub: Stub, agent_id: str, name: str) -> None:
    # Hourly: the test fires it itself, once.
    request = agent_pb2.CreateScheduleRequest(
        agent_id=agent_id, name=name, every=Duration(seconds=3600), instructions="Check the alerts."
    )
    stub.CreateSchedule(request)


def test_a_wake_up_waiting_for_its_run_holds_no_activity(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    llm.reply = ask_then_finish
    agent_id = create_agent(stub)
    schedule(stub, agent_id, "alerts")

    async def while_the_run_waits() -> tuple[WorkflowHandle[Any, Any], list[list[str]]]:
        wake_up = await fire(engine, agent_id, "alerts")
        eventually(lambda: waiting_for_user(stub, agent_id), what="the run asking its user")
        return wake_up, await held_activities(wake_up)

    try:
        wake_up, samples = asyncio.run(while_the_run_waits())
        # None held for the run's length (the old watch_run was pending throughout); at most a
        # check in flight for a moment.
        assert all(set(held) <= SHORT_ACTIVITIES for held in samples), samples
        assert [] in samples, samples

        chat(stub, agent_id, "The red ones.")

        async def result() -> tuple[dict[str, str], list[str]]:
            outcome = await asyncio.wait_for(wake_up.result(), 20)
            return outcome, await signalled(wake_up)

        outcome, signals = asyncio.run(result())
    finally:
        stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name="alerts"))
    assert (outcome["outcome"], outcome["run_outcome"]) == (WakeUpOutcome.WOKE, "completed")
    assert outcome["run_id"].startswith("wake:alerts:")
    # Told by the agent, not found by a check.
    assert signals == [Signal.RUN_ENDED]


def test_a_run_cancelled_while_it_waits_for_its_user_ends_its_wake_up(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    """The run ends in a handler (cancel), not in a turn: the agent still signals at once."""
    llm.reply = ask_then_finish
    agent_id = create_agent(stub)
    schedule(stub, agent_id, "cancelled")

    async def cancel_and_wait() -> tuple[dict[str, str], list[str]]:
        wake_up = await fire(engine, agent_id, "cancelled")
        eventually(lambda: waiting_for_user(stub, agent_id), what="the run asking its user")
        # A run that ends before its wake-up follows it is found ended by follow_run itself, with
        # no signal: cancel once the wake-up follows, as a person's cancel would come much later.
        deadline = time.monotonic() + 20
        while not await follows_the_run(wake_up):
            assert time.monotonic() < deadline, "the wake-up never followed its run"
            await asyncio.sleep(0.1)
        cancel = agent_pb2.ControlAgentRequest(agent_id=agent_id, cancel=agent_pb2.Cancel())
        stub.ControlAgent(cancel)
        outcome = await asyncio.wait_for(wake_up.result(), 20)
        return outcome, await signalled(wake_up)

    try:
        outcome, signals = asyncio.run(cancel_and_wait())
    finally:
        stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name="cancelled"))
    assert outcome["outcome"] == WakeUpOutcome.WOKE and outcome["run_outcome"]
    assert signals == [Signal.RUN_ENDED]


def test_a_terminated_agent_is_found_gone_by_the_checks(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    llm.reply = ask_then_finish
    agent_id = create_agent(stub)
    schedule(stub, agent_id, "gone")

    async def terminate_and_wait() -> tuple[dict[str, str], list[str]]:
        wake_up = await fire(engine, agent_id, "gone")
        eventually(lambda: waiting_for_user(stub, agent_id), what="the run asking its user")
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).terminate("behind its back")
        outcome = await asyncio.wait_for(wake_up.result(), 20)
        return outcome, await signalled(wake_up)

    outcome, signals = asyncio.run(terminate_and_wait())
    assert (outcome["outcome"], outcome["run_outcome"]) == (
        WakeUpOutcome.WOKE,
        WakeUpOutcome.AGENT_GONE,
    )
    assert signals == []

"""Recurring wake-ups through the gateway: Temporal Schedules that start an agent's runs.

Create, list and delete them; bad requests refused; a schedule whose agent is gone deletes itself;
the busy policies, with runs longer than the interval; and, on an engine of its own, a schedule
firing every few seconds across a SIGKILL of the whole engine: every wake-up counted, none
doubled, and the times missed while it was down made up by one wake-up.
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from engram import WORKFLOW_ID_PREFIX
from engram.activities.wake_up import MAX_POLL_SECONDS, poll_delay
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import TENANT_ATTRIBUTE, WakeUpOutcome
from engram.workflows.wake_up import run_id, schedule_id
from tests.conftest import TEST_TOOLS, create_agent, eventually
from tests.engine import Engine
from tests.fake_llm import FakeLLM, ToolUse
from tests.test_auth import bearer, code_of, create_key
from tests.test_example import run_client
from tests.test_readme_tools import examples
from tests.test_tool_use import notices

Stub = agent_pb2_grpc.AgentServiceStub


def seconds(value: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(value * 1e9))
    return duration


def finish_at_once(messages: list[dict[str, Any]]) -> ToolUse:
    return ToolUse([("finish", '{"answer": "Checked."}')])


def wait_then_finish(messages: list[dict[str, Any]]) -> ToolUse:
    """A run that takes five seconds: longer than its schedule's interval."""
    if messages[-1]["role"] == "tool":
        return ToolUse([("finish", '{"answer": "Checked, slowly."}')])
    return ToolUse([("wait", '{"seconds": 5, "reason": "let the alerts settle"}')])


def create_schedule(stub: Stub, agent_id: str, name: str, **fields: Any) -> agent_pb2.Schedule:
    request = agent_pb2.CreateScheduleRequest(agent_id=agent_id, name=name, **fields)
    schedule: agent_pb2.Schedule = stub.CreateSchedule(request)
    return schedule


def listed(stub: Stub, agent_id: str) -> list[agent_pb2.Schedule]:
    request = agent_pb2.ListSchedulesRequest(agent_id=agent_id)
    return list(stub.ListSchedules(request).schedules)


def wake_turns(stub: Stub, agent_id: str) -> list[agent_pb2.Turn]:
    """The agent's runs started by its schedules, oldest first."""
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    return [t for t in turns if t.message_id.startswith("wake:")]


def slot_of(turn: agent_pb2.Turn) -> float:
    """The time the run's firing was due, from its id (wake:<name>:<time>)."""
    due = turn.message_id.rsplit(":", 1)[1]
    return datetime.strptime(due, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def started(turn: agent_pb2.Turn) -> float:
    return turn.started_at.ToNanoseconds() / 1e9


def ended(turn: agent_pb2.Turn) -> float:
    return turn.ended_at.ToNanoseconds() / 1e9


def runs_until(
    stub: Stub, agent_id: str, count: int, timeout: float, *, done: bool = True
) -> list[agent_pb2.Turn]:
    """Wait for `count` wake-up runs (started, or also ended); all of them."""
    found: list[agent_pb2.Turn] = []

    def enough() -> bool:
        nonlocal found
        found = wake_turns(stub, agent_id)
        return len([t for t in found if t.outcome or not done]) >= count

    eventually(enough, timeout, f"{count} wake-ups of {agent_id}")
    return found


async def temporal(engine: Engine) -> Client:
    return await Client.connect(f"127.0.0.1:{engine.temporal_port}")


async def schedule_exists(engine: Engine, schedule_id: str) -> bool:
    try:
        await (await temporal(engine)).get_schedule_handle(schedule_id).describe()
    except RPCError as err:
        assert err.status == RPCStatusCode.NOT_FOUND
        return False
    return True


def test_names() -> None:
    agent_id = "6f1c1f9e-1b7c-4a43-9d4e-2f7c1a0b9e11"
    assert schedule_id(agent_id, "alerts") == f"agent-{agent_id}-wake-alerts"
    due = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)
    assert run_id("alerts", due) == "wake:alerts:20260302T090005Z"
    # Quick looks at a short run, then no more than one every few seconds.
    assert poll_delay(0) == 0.5 and poll_delay(10) == 1.5 and poll_delay(3600) == MAX_POLL_SECONDS


# --- the API -------------------------------------------------------------------------------


def test_create_list_and_delete(stub: Stub, engine: Engine) -> None:
    agent_id = create_agent(stub, goal="Keep the alerts under control.")
    morning = create_schedule(
        stub,
        agent_id,
        "overnight-alerts",
        cron=["0 9 * * 1-5"],
        timezone="Europe/Lisbon",
        instructions="Check the overnight alerts.",
    )
    assert morning.schedule_id == f"{WORKFLOW_ID_PREFIX}{agent_id}-wake-overnight-alerts"
    assert (morning.agent_id, morning.name) == (agent_id, "overnight-alerts")
    assert list(morning.cron) == ["0 9 * * 1-5"] and not morning.HasField("every")
    assert morning.instructions == "Check the overnight alerts."
    assert (morning.overlap, morning.timezone) == ("skip", "Europe/Lisbon")
    assert morning.fired == 0 and not morning.paused
    # 9:00 in Lisbon is 9:00 UTC in winter and 8:00 in summer; never a weekend.
    next_fire = morning.next_fire.ToDatetime().replace(tzinfo=UTC)
    assert next_fire > datetime.now(UTC) and next_fire.weekday() < 5
    assert (next_fire.hour, next_fire.minute) in ((8, 0), (9, 0))

    hourly = create_schedule(stub, agent_id, "hourly", every=seconds(3600), overlap="buffer_one")
    assert hourly.every.seconds == 3600 and not hourly.cron and hourly.overlap == "buffer_one"
    assert hourly.next_fire.seconds % 3600 == 0

    eventually(lambda: len(listed(stub, agent_id)) == 2, what="both schedules listed")
    assert [s.name for s in listed(stub, agent_id)] == ["hourly", "overnight-alerts"]
    assert listed(stub, agent_id)[1] == morning

    again = code_of(lambda: create_schedule(stub, agent_id, "hourly", every=seconds(60)))
    assert again == (
        grpc.StatusCode.ALREADY_EXISTS,
        f"agent {agent_id} already has a schedule named 'hourly'",
    )

    stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name="hourly"))
    eventually(lambda: [s.name for s in listed(stub, agent_id)] == ["overnight-alerts"])
    gone = code_of(
        lambda: stub.DeleteSchedule(
            agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name="hourly")
        )
    )
    assert gone == (grpc.StatusCode.NOT_FOUND, f"agent {agent_id} has no schedule named 'hourly'")

    # Deleting the agent deletes its schedules; a deleted agent gets no new ones.
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id))
    assert not asyncio.run(schedule_exists(engine, morning.schedule_id))
    late = code_of(lambda: create_schedule(stub, agent_id, "late", every=seconds(60)))
    assert late == (grpc.StatusCode.FAILED_PRECONDITION, f"agent {agent_id} has been deleted")


def test_bad_requests_change_nothing(stub: Stub, engine: Engine) -> None:
    agent_id = create_agent(stub)
    every = {"every": seconds(60)}
    refused: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        ({"agent_id": "", **every}, grpc.StatusCode.INVALID_ARGUMENT, "agent_id is required"),
        ({"name": "", **every}, grpc.StatusCode.INVALID_ARGUMENT, "name is required"),
        ({"name": "two words", **every}, grpc.StatusCode.INVALID_ARGUMENT, "must be 1-64"),
        ({"cron": ["61 9 * * *"]}, grpc.StatusCode.INVALID_ARGUMENT, "Minute is not in range"),
        ({"cron": ["every day"]}, grpc.StatusCode.INVALID_ARGUMENT, "does not have 5-7 fields"),
        ({"cron": [" "]}, grpc.StatusCode.INVALID_ARGUMENT, "must not be empty"),
        ({"every": seconds(0)}, grpc.StatusCode.INVALID_ARGUMENT, "at least 1 second"),
        ({"every": seconds(-5)}, grpc.StatusCode.INVALID_ARGUMENT, "at least 1 second"),
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "needs cron expressions or an interval"),
        (
            {"overlap": "queue_all", **every},
            grpc.StatusCode.INVALID_ARGUMENT,
            "overlap must be one of skip, buffer_one",
        ),
        (
            {"cron": ["0 9 * * *"], "timezone": "Mars/Olympus"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown time zone Mars/Olympus",
        ),
        ({"agent_id": str(uuid.uuid4()), **every}, grpc.StatusCode.NOT_FOUND, "not found"),
    ]
    for fields, code, words in refused:
        request = {"agent_id": agent_id, "name": "daily", **fields}
        found = code_of(lambda r=request: stub.CreateSchedule(agent_pb2.CreateScheduleRequest(**r)))  # type: ignore[misc]
        assert found[0] == code and words in found[1], (fields, found)
    missing = str(uuid.uuid4())
    for call in (
        lambda: listed(stub, missing),
        lambda: stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=missing, name="x")),
    ):
        assert code_of(call) == (grpc.StatusCode.NOT_FOUND, f"agent {missing} not found")
    assert code_of(lambda: listed(stub, "nope"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert not asyncio.run(schedule_exists(engine, f"{WORKFLOW_ID_PREFIX}{agent_id}-wake-daily"))
    assert listed(stub, agent_id) == []


def test_a_schedule_whose_agent_is_gone_deletes_itself(
    stub: Stub, engine: Engine, llm: FakeLLM
) -> None:
    """An agent ended behind the gateway's back (terminated in the Web UI, say): its schedule's
    next wake-up finds nothing to wake, and deletes the schedule."""
    llm.reply = finish_at_once
    agent_id = create_agent(stub)
    schedule = create_schedule(stub, agent_id, "ping", every=seconds(2))

    async def terminate_and_wait() -> list[str]:
        client = await temporal(engine)
        await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).terminate("behind its back")
        deadline = time.monotonic() + 15
        while await schedule_exists(engine, schedule.schedule_id):
            assert time.monotonic() < deadline, "the schedule outlived its agent"
            await asyncio.sleep(0.2)
        return await wake_up_outcomes(engine, schedule.schedule_id)

    assert WakeUpOutcome.AGENT_GONE in asyncio.run(terminate_and_wait())


def test_another_tenants_agent_has_no_schedules(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """Schedule calls on another tenant's agent are answered as for an agent that is not there."""
    data_dir = tmp_path / "secured"
    acme, globex = bearer(create_key(data_dir, "acme")), bearer(create_key(data_dir, "globex"))
    engine = Engine(data_dir, fake_llm.url).start()
    try:
        stub = engine.stub()
        request = agent_pb2.CreateAgentRequest(goal="acme's", model="m")
        agent_id = stub.CreateAgent(request, metadata=acme).agent_id
        every = seconds(3600)
        made = stub.CreateSchedule(
            agent_pb2.CreateScheduleRequest(agent_id=agent_id, name="hourly", every=every),
            metadata=acme,
        )

        def calls(agent: str) -> dict[str, Callable[[], object]]:
            return {
                "CreateSchedule": lambda: stub.CreateSchedule(
                    agent_pb2.CreateScheduleRequest(agent_id=agent, name="mine", every=every),
                    metadata=globex,
                ),
                "ListSchedules": lambda: stub.ListSchedules(
                    agent_pb2.ListSchedulesRequest(agent_id=agent), metadata=globex
                ),
                "DeleteSchedule": lambda: stub.DeleteSchedule(
                    agent_pb2.DeleteScheduleRequest(agent_id=agent, name="hourly"),
                    metadata=globex,
                ),
            }

        missing = str(uuid.uuid4())
        theirs, nobody = calls(agent_id), calls(missing)
        for name, call in theirs.items():
            foreign, absent = code_of(call), code_of(nobody[name])
            assert foreign[0] == absent[0] == grpc.StatusCode.NOT_FOUND, (name, foreign, absent)
            assert foreign[1].replace(agent_id, "ID") == absent[1].replace(missing, "ID"), name
        # Untouched, and the schedule carries its tenant for operators to filter on.
        owner = agent_pb2.ListSchedulesRequest(agent_id=agent_id)
        eventually(lambda: len(stub.ListSchedules(owner, metadata=acme).schedules) == 1)
        assert stub.ListSchedules(owner, metadata=acme).schedules[0].name == "hourly"

        async def tenant_of_schedule() -> str | None:
            handle = (await temporal(engine)).get_schedule_handle(made.schedule_id)
            return (await handle.describe()).typed_search_attributes.get(TENANT_ATTRIBUTE)

        assert asyncio.run(tenant_of_schedule()) == "acme"
    finally:
        engine.stop()


# --- when the agent is busy ----------------------------------------------------------------


def test_a_busy_agent_skips_or_keeps_one_wake_up(stub: Stub, llm: FakeLLM) -> None:
    """Runs of five seconds on a schedule of two: `skip` drops the firings that fall due during a
    run; `buffer_one` keeps the first of them, which starts when the run ends, and drops the
    others."""
    llm.reply = wait_then_finish
    skipping, keeping = create_agent(stub), create_agent(stub)
    every = seconds(2)
    create_schedule(stub, skipping, "skip", every=every, instructions="Look.", overlap="skip")
    create_schedule(stub, keeping, "keep", every=every, instructions="Look.", overlap="buffer_one")
    try:
        kept = runs_until(stub, keeping, 3, timeout=40, done=False)
        skipped = runs_until(stub, skipping, 2, timeout=20, done=False)
    finally:
        for agent_id, name in ((skipping, "skip"), (keeping, "keep")):
            stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name=name))
    first, second = skipped[:2]
    # Nothing was kept: the next run is of the first time due after the wake-up ended.
    assert ended(first) < slot_of(second) < ended(first) + 2 + 4
    first, second, third = kept[:3]
    # One was kept while the first run worked (its time came during it), and started after it.
    assert started(first) < slot_of(second) < ended(first) <= started(second)
    # The others that fell due during that run were dropped: the third is of a time at least two
    # periods after the kept one, and not inside the first run (a firing due the very instant it
    # ended may be either side of that edge, hence the second of slack).
    assert slot_of(third) >= slot_of(second) + 2 * 2
    assert slot_of(third) > ended(first) - 1
    for runs in (skipped, kept):
        assert len({t.message_id for t in runs}) == len(runs)
        assert all(t.user == "Look." for t in runs)


def test_a_run_started_by_someone_else(stub: Stub, engine: Engine, llm: FakeLLM) -> None:
    """The agent works on a run of its own when its schedule fires: `skip` drops the wake-up,
    `buffer_one` waits for the run to end, and a wake-up still waiting when its schedule is
    deleted never wakes the agent."""
    llm.reply = wait_then_finish
    agents = {policy: create_agent(stub) for policy in ("skip", "buffer_one", "deleted")}
    for agent_id in agents.values():
        run = agent_pb2.Run(instructions="The long job.")
        stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, run=run))
    for policy, agent_id in agents.items():
        overlap = "skip" if policy == "skip" else "buffer_one"
        create_schedule(stub, agent_id, policy, every=seconds(2), overlap=overlap)
    deleted = agents["deleted"]

    def fired() -> bool:
        # Schedules are listed from Temporal's visibility store, which catches up shortly after.
        return any(s.fired > 0 for s in listed(stub, deleted))

    eventually(fired, what="a firing while the agent works")
    stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=deleted, name="deleted"))
    try:
        [skipped] = runs_until(stub, agents["skip"], 1, timeout=20, done=False)[:1]
        [kept] = runs_until(stub, agents["buffer_one"], 1, timeout=20, done=False)[:1]
    finally:
        for policy in ("skip", "buffer_one"):
            request = agent_pb2.DeleteScheduleRequest(agent_id=agents[policy], name=policy)
            stub.DeleteSchedule(request)

    def long_job(agent_id: str) -> agent_pb2.Turn:
        history = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id))
        job: agent_pb2.Turn = next(t for t in history.turns if t.user == "The long job.")
        return job

    job = long_job(agents["skip"])
    # Its wake-ups found the agent busy and did nothing; the first to find it free woke it, at
    # once (one due a moment before the job ended may be that one).
    assert ended(job) <= started(skipped) < slot_of(skipped) + 2
    skip_outcomes = asyncio.run(wake_up_outcomes(engine, schedule_id(agents["skip"], "skip")))
    assert WakeUpOutcome.BUSY in skip_outcomes
    job = long_job(agents["buffer_one"])
    assert slot_of(kept) < ended(job) <= started(kept)
    # The deleted schedule's wake-up was cancelled: the long job ends, and nothing follows it.
    eventually(lambda: bool(long_job(deleted).outcome), timeout=10)
    time.sleep(1.5)
    assert wake_turns(stub, deleted) == []


# --- across a SIGKILL of the whole engine --------------------------------------------------

INTERVAL = 3.0


@pytest.mark.chaos
def test_wake_ups_across_a_kill_of_the_whole_engine(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = finish_at_once
    engine = Engine(
        tmp_path / "data", llm.url, ENGRAM_TOOLS=TEST_TOOLS, ENGRAM_SCHEDULE_MIN_EVERY="1"
    ).start()
    try:
        stub = engine.stub()
        agent_id = create_agent(stub, goal="Watch the alerts.")
        # buffer_one, the policy that would otherwise start two of the times missed.
        schedule = create_schedule(
            stub, agent_id, "alerts", every=seconds(INTERVAL), overlap="buffer_one"
        )
        runs_until(stub, agent_id, 3, timeout=20)
        asyncio.run(quiet_moment(engine, schedule.schedule_id))
        killed = time.time()
        engine.kill()
        time.sleep(2 * INTERVAL + 1)
        engine.start()
        back = time.time()
        stub = engine.stub()
        # Until a run of a time due after the engine was back has ended.
        eventually(
            lambda: any(slot_of(t) > back and t.outcome for t in wake_turns(stub, agent_id)),
            timeout=30,
            what="a wake-up after the restart",
        )
        # Deleted between two wake-ups: none is stopped halfway.
        asyncio.run(quiet_moment(engine, schedule.schedule_id))
        stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name="alerts"))
        # Every wake-up ended (none is left to start a run) before the runs are counted.
        fired = asyncio.run(wake_up_outcomes(engine, schedule.schedule_id))
        runs = wake_turns(stub, agent_id)
        everything = list(
            stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True))
        )
    finally:
        engine.stop()

    slots = [slot_of(t) for t in runs]
    # Counted: every run is recorded once, started once, and completed.
    assert len(set(slots)) == len(slots) == len({t.message_id for t in runs})
    assert notices(everything).count("run_started") == len(runs)
    assert all(t.outcome == "completed" for t in runs)
    # Before the kill, one run per time due, none missed.
    before = [s for s in slots if s < killed]
    assert len(before) >= 3 and before == [before[0] + INTERVAL * k for k in range(len(before))]
    # Several times fell due while the engine was down or starting: one wake-up made up for them.
    missed = math.floor(back / INTERVAL) - math.ceil(killed / INTERVAL) + 1
    assert missed >= 2
    down = [t for t in runs if killed <= slot_of(t) < back]
    assert len(down) == 1 and started(down[0]) > killed + 2 * INTERVAL
    # Each firing of the schedule woke the agent once, or said why it did not.
    assert fired.count(WakeUpOutcome.WOKE) == len(runs)
    assert set(fired) <= {WakeUpOutcome.WOKE, WakeUpOutcome.COVERED}


async def quiet_moment(engine: Engine, schedule_id: str) -> None:
    """Until no wake-up is running and the next is more than a second away: a kill now finds no
    wake-up in flight (one would cover the times missed, and make none up)."""
    handle = (await temporal(engine)).get_schedule_handle(schedule_id)
    deadline = time.monotonic() + 20
    while True:
        info = (await handle.describe()).info
        ahead = info.next_action_times[0].timestamp() - time.time()
        if not info.running_actions and ahead > 1.2:
            return
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.05)


async def wake_up_outcomes(engine: Engine, schedule_id: str) -> list[str]:
    """The outcome of every wake-up the schedule started, once each has ended ("cancelled" for
    one stopped by DeleteSchedule)."""
    client = await temporal(engine)
    await asyncio.sleep(1)  # visibility lists a workflow a moment after it starts
    query = f"WorkflowType = 'WakeUpWorkflow' AND WorkflowId STARTS_WITH '{schedule_id}'"
    outcomes = []
    async for execution in client.list_workflows(query):
        handle = client.get_workflow_handle(execution.id)
        if (await handle.describe()).status == WorkflowExecutionStatus.CANCELED:
            outcomes.append("cancelled")
        else:
            outcomes.append((await handle.result())["outcome"])
    return outcomes


# --- the README's example ------------------------------------------------------------------


def test_readme_schedule_example(engine: Engine, stub: Stub) -> None:
    [example] = [e for e in examples("## Autonomous agents", "## Terminal") if "Schedule" in e]
    out = run_client(sys.executable, example, engine).strip()
    found = re.fullmatch(
        rf"({WORKFLOW_ID_PREFIX}(\S+)-wake-overnight-alerts) next fires at (\S+ \S+)", out
    )
    assert found is not None, out
    agent_id = found[2]
    eventually(lambda: len(listed(stub, agent_id)) == 1, what="the example's schedule listed")
    [schedule] = listed(stub, agent_id)
    assert schedule.schedule_id == found[1] and list(schedule.cron) == ["0 9 * * 1-5"]
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id))
    assert listed(stub, agent_id) == []

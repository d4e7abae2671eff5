"""Autonomous runs, in-process on the real dev server: steps, finish, wait, ask_user, bounds,
cancel and pause at any moment, and continue-as-new in the middle of a long run."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable

import pytest

from engram.gateway.agent_calls import turn_ended
from engram.vocabulary import AgentStatus, Command, EventKind, Notice, TurnOutcome
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import (
    Event,
    LLMRequest,
    LLMResult,
    RunInput,
    StreamPiece,
    ToolCall,
)
from tests.workflow_harness import (
    Agent,
    Harness,
    eventually,
    within,
)

Reply = Callable[[LLMRequest], "str | LLMResult"]


def calls(name: str, arguments: dict[str, object], text: str = "") -> LLMResult:
    """A model step that calls one tool."""
    pieces = [StreamPiece(kind=EventKind.TEXT, text=text)] if text else []
    return LLMResult(
        outcome=TurnOutcome.COMPLETED,
        pieces=pieces,
        tokens=10,
        tool_calls=[ToolCall(call_id="c", name=name, arguments=json.dumps(arguments))],
    )


def is_run_step(request: LLMRequest) -> bool:
    return any(t["function"]["name"] == "finish" for t in request.tools)


async def events_of(agent: Agent, message_id: str) -> list[Event]:
    result = await agent.wait_turn(message_id)
    return result.events


async def run_id_of(agent: Agent) -> str:
    async def started() -> bool:
        return (await agent.describe()).run is not None

    await eventually(started, "the run to start")
    info = await agent.describe()
    assert info.run is not None
    return info.run.run_id


async def test_a_run_works_sleeps_and_finishes(harness: Harness) -> None:
    steps = iter(
        [
            calls("remember", {"name": "plan", "content": "check, then report"}),
            calls("wait", {"seconds": 1, "reason": "the build to finish"}),
            calls("finish", {"answer": "All green.", "structured": {"failed": 0}}),
        ]
    )
    harness.fake.reply = lambda request: next(steps)
    agent = await harness.create_agent(goal="Watch the build.", autonomous=True)
    run_id = await run_id_of(agent)
    events = await events_of(agent, run_id)

    assert all(e.message_id == run_id for e in events)
    codes = [e.code for e in events if e.kind == EventKind.STATUS]
    assert codes == [Notice.RUN_STARTED, Notice.SLEEPING, Notice.AWAKE]
    sleeping = next(e for e in events if e.code == Notice.SLEEPING)
    assert "the build to finish" in sleeping.text
    woke = [e for e in events if e.kind == EventKind.TOOL_RESULT][1]
    assert woke.text.startswith("woke up at ")
    final = events[-1]
    assert (final.kind, final.text, final.structured) == (
        EventKind.FINAL_ANSWER,
        "All green.",
        {"failed": 0},
    )
    # Each step offered the run's own tools, and the goal is in the system message.
    requests = harness.fake.requests
    assert len(requests) == 3 and all(is_run_step(r) for r in requests)
    assert "Watch the build." in requests[0].messages[0].content
    info = await agent.describe()
    assert info.run is None and info.steps == 3 and info.status == AgentStatus.IDLE
    assert info.notes[0].content == "check, then report"


async def test_bounds_end_a_run_with_a_report(harness: Harness) -> None:
    def model(request: LLMRequest) -> str | LLMResult:
        if not request.tools:
            return "Checked 3 of 10 hosts; 7 are left."
        return calls("remember", {"name": "progress", "content": f"{len(request.tool_rounds)}"})

    harness.fake.reply = model
    agent = await harness.create_agent(config={"maxSteps": 3}, autonomous=True)
    run_id = await run_id_of(agent)
    events = await events_of(agent, run_id)
    limit = [e for e in events if e.code == Notice.LIMIT_REACHED]
    assert len(limit) == 1 and "3 steps" in limit[0].text
    assert events[-1].text == "Checked 3 of 10 hosts; 7 are left."
    # Three steps, then one call without tools for the report: nothing more.
    assert [bool(r.tools) for r in harness.fake.requests] == [True, True, True, False]
    report_prompt = harness.fake.requests[-1].messages[-1].content
    assert "limit of this run (3 steps)" in report_prompt
    info = await agent.describe()
    # Three steps of 10 tokens, and the report's 8 words.
    assert info.steps == 3 and info.tokens_used == 30 + 8


async def test_a_token_budget_ends_a_run(harness: Harness) -> None:
    harness.fake.reply = lambda r: (
        calls("remember", {"name": "x", "content": "y"}) if r.tools else "stopped"
    )
    agent = await harness.create_agent(config={"maxRunTokens": 25}, autonomous=True)
    run_id = await run_id_of(agent)
    events = await events_of(agent, run_id)
    assert any("25 tokens" in e.text for e in events if e.code == Notice.LIMIT_REACHED)
    # 10 tokens a step: the budget is overshot by at most one call.
    assert sum(1 for r in harness.fake.requests if r.tools) == 3


async def test_ask_user_stops_until_the_user_answers(harness: Harness) -> None:
    def model(request: LLMRequest) -> str | LLMResult:
        if not request.tool_rounds:
            return calls("ask_user", {"question": "Which database?"})
        answer = request.tool_rounds[-1].results[-1]
        return calls("finish", {"answer": f"Tuning: {answer}"})

    harness.fake.reply = model
    agent = await harness.create_agent(autonomous=True)
    run_id = await run_id_of(agent)
    asked = await events_of(agent, run_id)
    assert asked[-1].kind == EventKind.FINAL_ANSWER and asked[-1].text == "Which database?"
    info = await agent.describe()
    assert info.run is not None and info.run.waiting_for_user
    result = await agent.ask("Postgres, please")
    assert result.events[-1].text == "Tuning: The user answered: Postgres, please"
    assert (await agent.describe()).run is None


async def test_cancel_during_a_wait_ends_the_run_at_once(harness: Harness) -> None:
    harness.fake.reply = lambda r: calls("wait", {"seconds": 3600}) if r.tools else "?"
    agent = await harness.create_agent(autonomous=True)
    run_id = await run_id_of(agent)

    async def asleep() -> bool:
        return (await agent.describe()).status == AgentStatus.SLEEPING

    await eventually(asleep, "the agent to sleep")
    assert await agent.search_status() == AgentStatus.SLEEPING
    started = asyncio.get_running_loop().time()
    await agent.control(Command.CANCEL)
    result = await within(agent.wait_turn(run_id), 5)
    assert asyncio.get_running_loop().time() - started < 2
    assert result.events[-1].kind == EventKind.ERROR
    assert result.events[-1].code == "CANCELLED"
    assert (await agent.describe()).run is None
    harness.fake.reply = lambda r: "here"
    assert (await agent.ask("still there?")).events[-1].text == "here"


async def test_pause_holds_a_run_between_steps(harness: Harness) -> None:
    counter = itertools.count()
    harness.fake.reply = lambda r: (
        calls("finish", {"answer": "done"})
        if next(counter) >= 6
        else calls("remember", {"name": "n", "content": "x"})
    )
    agent = await harness.create_agent(autonomous=True)
    run_id = await run_id_of(agent)
    await agent.control(Command.PAUSE)
    await asyncio.sleep(0.5)
    held = len(harness.fake.requests)
    await asyncio.sleep(0.5)
    assert len(harness.fake.requests) == held < 7
    await agent.control(Command.RESUME)
    events = await events_of(agent, run_id)
    assert events[-1].text == "done"
    codes = [e.code for e in events if e.kind == EventKind.STATUS]
    assert Notice.PAUSED in codes and Notice.RESUMED in codes


def counting(harness: Harness, steps: int) -> Reply:
    """A model that notes each step's number, then finishes after `steps` of them."""

    def model(request: LLMRequest) -> str | LLMResult:
        done = sum(1 for r in harness.fake.requests if r.tools) - 1
        if done >= steps:
            return calls("finish", {"answer": f"{done} steps"})
        return calls("remember", {"name": "step", "content": str(done)})

    return model


async def test_a_long_run_continues_as_new_and_keeps_its_counts(harness: Harness) -> None:
    steps = 40

    harness.fake.reply = counting(harness, steps)
    agent = await harness.create_agent(max_history_events=80, autonomous=True)
    await run_id_of(agent)

    # Nobody waits on an update meanwhile (that would hold the run until its end): poll.
    async def finished() -> bool:
        info = await agent.describe()
        return info.run is None and info.status == AgentStatus.IDLE

    await eventually(finished, "the run to finish", timeout=60)
    turn = (await agent.history()).turns[-1]
    assert turn.reply == f"{steps} steps"
    runs = await agent.runs()
    assert len(runs) >= 3
    info = await agent.describe()
    assert info.steps == steps + 1 and info.tool_calls == steps + 1
    assert info.notes[0].content == str(steps - 1)
    # Every step once, in order: no step repeated across the boundaries.
    page = await agent.events()
    made = [json.loads(e.text) for e in page.events if e.kind == EventKind.TOOL_CALL]
    assert [m["content"] for m in made[:-1]] == [str(i) for i in range(steps)]
    seqs = [e.seq for e in page.events]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_followed_run_still_continues_as_new(harness: Harness) -> None:
    """Clients waiting on the run (as Chat and Replay do, through the gateway's `turn_ended`) and
    a chat message sent meanwhile are handed over to each new run, and get the whole turn."""
    steps = 30

    harness.fake.reply = counting(harness, steps)
    agent = await harness.create_agent(max_history_events=80, autonomous=True)
    run_id = await run_id_of(agent)
    followers = [asyncio.ensure_future(turn_ended(agent.handle, run_id)) for _ in range(2)]
    await eventually(lambda: len(harness.fake.requests) >= 5, "a few steps")
    queued = await agent.send("and then?", "after-run")

    results = [await within(f, timeout=60) for f in followers]
    assert len(await agent.runs()) >= 3  # it continued as new while they waited
    for result in results:
        assert not result.continued and result.message_id == run_id
        assert result.events[-1].kind == EventKind.FINAL_ANSWER
        assert result.events[-1].text == f"{steps} steps"
        made = [json.loads(e.text) for e in result.events if e.kind == EventKind.TOOL_CALL]
        assert [m["content"] for m in made[:-1]] == [str(i) for i in range(steps)]
        seqs = [e.seq for e in result.events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # The message sent during the run was taken in at its next step (the default policy).
    after = await within(turn_ended(agent.handle, "after-run", queued.result()), timeout=30)
    assert [(e.kind, e.text) for e in after.events][-1] == (EventKind.STATUS, run_id)
    assert "and then?" in [e.text for e in results[0].events]


async def test_a_second_run_is_refused_while_one_works(harness: Harness) -> None:
    harness.fake.reply = lambda r: calls("wait", {"seconds": 3600}) if r.tools else "?"
    agent = await harness.create_agent(autonomous=True)
    await run_id_of(agent)
    with pytest.raises(Exception) as refused:
        await agent.handle.execute_update(AgentWorkflow.start_run, RunInput(run_id="another"))
    assert "already working" in str(refused.value.__cause__ or refused.value)
    await agent.control(Command.CANCEL)

"""The `upgrade` signal, in process: an agent continues as new between turns, never within one,
and remembers everything it did before (tests/workflow_harness.py); and `engram agents upgrade`,
which sends it."""

from __future__ import annotations

import asyncio

import pytest

from engram.cli import main
from engram.upgrade import running_agents
from engram.vocabulary import ToolKind, TurnOutcome
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import AgentTool, Decision, LLMRequest, LLMResult, ToolCall
from tests.workflow_harness import Agent, Harness, eventually, within


async def current_run(agent: Agent) -> str:
    return (await within(agent.handle.describe())).run_id or ""


async def upgrade(agent: Agent) -> None:
    await within(agent.handle.signal(AgentWorkflow.upgrade))


async def test_an_idle_agent_continues_as_new_at_once_and_remembers(harness: Harness) -> None:
    fake = harness.fake
    agent = await harness.create_agent()
    await agent.ask("My name is Ada.", "m1")
    await eventually(agent.is_quiet, "the turn's upkeep to end")
    assert await current_run(agent) == agent.first_run_id

    await upgrade(agent)
    await eventually(lambda: _moved_on(agent), "the agent to continue as new", timeout=20)
    second = await agent.ask("What is my name?", "m2")

    assert second.events[-1].text == "You said: What is my name?"
    prompt = [(m.role, m.content) for m in fake.requests[-1].messages]
    assert ("user", "My name is Ada.") in prompt
    assert ("assistant", "You said: My name is Ada.") in prompt
    turns = (await agent.history()).turns
    assert [t.message_id for t in turns] == ["m1", "m2"]
    runs = await agent.runs()
    # Upgraded once: the new run does not continue again for the same signal.
    assert len(runs) == 2 and not runs[1].next_run_id


async def test_an_agent_waiting_for_approval_continues_only_after_the_turn(
    harness: Harness,
) -> None:
    fake = harness.fake
    deploy = AgentTool(
        name="work",
        kind=ToolKind.WORKER,
        function={"type": "function", "function": {"name": "work", "parameters": {}}},
        requires_confirmation=True,
    )

    def reply(request: LLMRequest) -> str | LLMResult:
        if request.tool_rounds:
            return "Not deployed."
        call = ToolCall(call_id="c1", name="work", arguments="{}")
        return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=[], tool_calls=[call])

    fake.reply = reply
    agent = await harness.create_agent(tools=[deploy])
    turn = await agent.send("Deploy it.", "m1")

    async def waits_for_approval() -> bool:
        return bool((await agent.describe()).pending)

    await eventually(waits_for_approval, "the call to wait for approval")
    await upgrade(agent)
    # Time for a wrongly eager agent to continue as new.
    await asyncio.sleep(1.0)
    assert await current_run(agent) == agent.first_run_id
    (waiting,) = (await agent.describe()).pending

    await within(
        agent.handle.execute_update(
            AgentWorkflow.decide, Decision(call_id=waiting.call_id, approved=False, reason="no")
        )
    )
    result = await within(turn.result())
    assert result.events[-1].text == "Not deployed."
    await eventually(lambda: _moved_on(agent), "the agent to continue as new after the turn")

    fake.reply = lambda request: "Noted."
    await agent.ask("Anything else?", "m2")
    assert ("assistant", "Not deployed.") in [
        (m.role, m.content) for m in fake.requests[-1].messages
    ]
    assert fake.tool_calls == []


async def _moved_on(agent: Agent) -> bool:
    return await current_run(agent) != agent.first_run_id


async def test_a_run_waiting_for_its_user_continues_only_after_it_ends(harness: Harness) -> None:
    fake = harness.fake

    def reply(request: LLMRequest) -> LLMResult:
        # The first step asks; the step after the answer finishes.
        call = (
            ToolCall(call_id="f", name="finish", arguments='{"answer": "Shipped."}')
            if len(fake.requests) > 1
            else ToolCall(call_id="q", name="ask_user", arguments='{"question": "Ship it?"}')
        )
        return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=[], tool_calls=[call])

    fake.reply = reply
    agent = await harness.create_agent(autonomous=True)

    async def waits_for_its_user() -> bool:
        info = await agent.describe()
        return info.run is not None and info.run.waiting_for_user

    await eventually(waits_for_its_user, "the run to ask its user")
    await upgrade(agent)
    await asyncio.sleep(1.0)
    assert await current_run(agent) == agent.first_run_id

    answer = await agent.ask("Yes, ship it.", "answer")
    assert answer.events[-1].text == "Shipped."
    await eventually(lambda: _moved_on(agent), "the agent to continue as new after the run")
    assert (await agent.describe()).run is None


async def engram_agents_upgrade(harness: Harness, *args: str) -> int:
    """`engram agents upgrade ARGS` against the harness's server; its exit code."""
    address = harness.client.service_client.config.target_host
    argv = ["agents", "upgrade", "--temporal-address", address, "--no-tls", *args]
    with pytest.raises(SystemExit) as exited:
        # The command runs its own event loop.
        await asyncio.to_thread(main, argv)
    code = exited.value.code
    assert isinstance(code, int)
    return code


async def test_engram_agents_upgrade_reports_what_each_agent_did(
    harness: Harness, capfd: pytest.CaptureFixture[str]
) -> None:
    fake = harness.fake
    idle = await harness.create_agent()
    await idle.ask("Hello.", "m1")
    await eventually(idle.is_quiet, "the turn's upkeep to end")
    fake.gate = asyncio.Event()
    busy = await harness.create_agent()
    turn = await busy.send("A long one.", "m1")
    await fake.wait_for_requests(2)
    capfd.readouterr()

    code = await engram_agents_upgrade(
        harness, idle.agent_id, busy.agent_id, "no-such-agent", "--wait", "2"
    )

    lines = capfd.readouterr().out.splitlines()
    assert code == 1  # an agent named that does not run
    assert f"{idle.agent_id}  continued as new" in lines
    assert f"{busy.agent_id}  signalled: continues as new once its turn or run ends" in lines
    assert "no-such-agent  not running" in lines
    assert lines[-1] == "3 agents: 1 continued as new, 1 will once idle, 1 not running"
    assert await _moved_on(idle) and not await _moved_on(busy)
    fake.gate.set()
    await within(turn.result())
    await eventually(lambda: _moved_on(busy), "the busy agent to continue after its turn")

    # Neither names nor --all: refused.
    assert await engram_agents_upgrade(harness) == 2
    assert "name the agents" in capfd.readouterr().out


async def test_engram_agents_upgrade_all_finds_running_agents_through_visibility(
    harness: Harness, capfd: pytest.CaptureFixture[str]
) -> None:
    agent = await harness.create_agent()
    await agent.ask("Hello.", "m1")

    async def listed() -> bool:
        return agent.agent_id in await running_agents(harness.client)

    await eventually(listed, "visibility to list the agent")
    capfd.readouterr()
    assert await engram_agents_upgrade(harness, "--all", "--wait", "5") == 0
    assert f"{agent.agent_id}  continued as new" in capfd.readouterr().out.splitlines()
    assert await _moved_on(agent)

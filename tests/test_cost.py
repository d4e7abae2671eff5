"""What LLM calls cost, agents' budgets, and the kill switch.

The cost tests run the real LLM activity against the fake HTTP model (which reports usage with
cached and reasoning tokens) on a worker of their own, with a price table made for the test.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from engram import WORKFLOW_ID_PREFIX
from engram.activities.llm_stream import LLMActivities
from engram.llm_settings import LLMEndpoint
from engram.prices import PriceTable, Usage
from engram.terminal.stop import pause_agents, tenant_agents
from engram.vocabulary import STATUS_ATTRIBUTE, TENANT_ATTRIBUTE, AgentStatus, Notice
from engram.worker import ensure_search_attributes
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import AgentSpec, AgentState, EditInput
from tests.fake_llm import FakeLLM, Reasoning
from tests.workflow_harness import Agent, FakeActivities, Harness, eventually, within

# USD per million tokens: round numbers, so a hand calculation is easy to follow.
PRICES = PriceTable.parse(
    {
        "as_of": "2026-12-01",
        "models": {
            "priced": {"input": 2.0, "cached_input": 0.5, "output": 8.0, "reasoning": 10.0},
            "dear": {"input": 1000.0, "output": 1000.0},
        },
    }
)


def test_the_shipped_table_is_dated_and_prices_well_known_models() -> None:
    table = PriceTable.load()
    assert table.as_of == "2026-12-01"
    price = table.price("gpt-4o-mini-2024-07-18")  # a dated snapshot, priced as its family
    assert price is not None and price == table.price("gpt-4o-mini")
    assert table.price("gpt-4o") != price


def test_a_call_costs_its_tokens_at_their_prices() -> None:
    usage = Usage(prompt=1000, completion=500, cached=400, reasoning=200)
    by_hand = (600 * 2.0 + 400 * 0.5 + 300 * 8.0 + 200 * 10.0) / 1e6
    assert PRICES.cost("priced", usage) == pytest.approx(by_hand, abs=1e-12)
    assert PRICES.cost("unknown-model", usage) == 0.0


def test_an_unknown_model_is_told_once(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable.parse({"models": {}})
    for _ in range(3):
        assert table.cost("mystery", Usage(prompt=10)) == 0.0
    assert sum("mystery" in r.getMessage() for r in caplog.records) == 1


@pytest.fixture
async def priced(workflow_env: WorkflowEnvironment, llm: FakeLLM) -> AsyncIterator[Harness]:
    """A harness whose LLM calls go to the fake HTTP model through the real activity."""
    fake = FakeActivities()
    harness = Harness(workflow_env.client, fake, f"engram-cost-{uuid.uuid4()}")
    real = LLMActivities(LLMEndpoint(llm.url), prices=PRICES)
    worker = Worker(
        workflow_env.client,
        task_queue=harness.task_queue,
        workflows=[AgentWorkflow],
        activities=[
            real.stream_chat,
            real.load_reply,
            fake.summarize,
            fake.announce,
            fake.archive_events,
            fake.archive_turns,
        ],
    )
    async with worker:
        try:
            yield harness
        finally:
            await harness.close()


def _by_hand(usage: dict[str, Any]) -> float:
    """A reported usage at PRICES["priced"], reckoned apart from the code under test."""
    prompt, completion = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    cached = int(usage["prompt_tokens_details"]["cached_tokens"])
    reasoning = int(usage["completion_tokens_details"]["reasoning_tokens"])
    cost: float = (
        (prompt - cached) * 2.0 + cached * 0.5 + (completion - reasoning) * 8.0 + reasoning * 10.0
    ) / 1e6
    return cost


async def test_a_conversation_costs_what_its_reported_usage_does(
    priced: Harness, llm: FakeLLM
) -> None:
    llm.cached_tokens = 5
    llm.reply = lambda messages: Reasoning("Let me think about this one.", "Two answers here.")
    agent = await priced.create_agent(model="priced")
    before = len(llm.usages)
    first = await agent.ask("What is two and two?")
    second = await agent.ask("And three and three, please?")
    usages = llm.usages[before:]
    assert len(usages) == 2
    expected = [_by_hand(u) for u in usages]
    assert all(cost > 0 for cost in expected)

    info = await agent.describe()
    assert info.cost_usd == pytest.approx(sum(expected), abs=1e-6)
    turns = {t.message_id: t for t in (await agent.history()).turns}
    assert turns[first.message_id].cost_usd == pytest.approx(expected[0], abs=1e-6)
    assert turns[second.message_id].cost_usd == pytest.approx(expected[1], abs=1e-6)


async def test_the_call_that_could_cross_the_budget_is_never_sent(
    priced: Harness, llm: FakeLLM
) -> None:
    # At $1000 a million tokens, $0.01 buys 10 tokens: the first call's worst case (its prompt
    # and 4096 tokens of output) is far over it.
    agent = await priced.create_agent(model="dear", config={"maxCostUsd": 0.01})
    before = len(llm.requests)
    sent = await agent.send("Hello there")
    await eventually(lambda: _status(agent, AgentStatus.BUDGET_EXHAUSTED), what="budget exhausted")
    assert len(llm.requests) == before, "the call over budget reached the model"
    page = await agent.events()
    notices = [e for e in page.events if e.code == Notice.BUDGET_EXHAUSTED]
    assert notices and "max_cost_usd" in notices[0].text

    await agent.edit(EditInput(max_cost_usd=100.0))
    result = await within(sent.result())
    assert any(e.kind == "final_answer" for e in result.events)
    assert len(llm.requests) == before + 1
    info = await agent.describe()
    assert info.status == AgentStatus.IDLE and 0 < info.cost_usd <= 100.0


async def _status(agent: Agent, status: str) -> bool:
    return (await agent.describe()).status == status


BUSY_AGENTS = 100


@pytest.fixture
async def crowded(workflow_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    """A harness whose worker holds an LLM call of every busy agent at once (Temporal's default
    is 100 activities), their heartbeats once a second rather than twenty times."""
    fake = FakeActivities(heartbeat_every=1.0)
    harness = Harness(workflow_env.client, fake, f"engram-crowd-{uuid.uuid4()}")
    async with harness.worker(max_concurrent_activities=BUSY_AGENTS + 20):
        try:
            yield harness
        finally:
            await harness.close()


@pytest.mark.timed
async def test_the_kill_switch_pauses_every_busy_agent_of_a_tenant_within_2_seconds(
    crowded: Harness,
) -> None:
    harness = crowded
    client = harness.client
    await ensure_search_attributes(client)
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    harness.fake.gate = asyncio.Event()  # every LLM call holds: the agents are busy
    agents = list(
        await asyncio.gather(*(_tenant_agent(harness, tenant) for _ in range(BUSY_AGENTS)))
    )
    other = await _tenant_agent(harness, "someone-else")
    sent = await asyncio.gather(*(agent.send("Work on this") for agent in [*agents, other]))
    await eventually(lambda: _running_calls(harness, BUSY_AGENTS + 1), what="busy agents")
    await eventually(
        lambda: _listed(client, tenant, BUSY_AGENTS), what="visibility lists the agents"
    )

    started = time.monotonic()
    paused = await pause_agents(client, await tenant_agents(client, tenant))
    took = time.monotonic() - started
    print(f"paused {len(paused)} busy agents in {took:.2f} s")
    assert took <= 2.0, f"the kill switch took {took:.2f} s"
    assert sorted(paused) == sorted(a.agent_id for a in agents)
    assert all(error == "" for error in paused.values())

    # Their turns end, and they stay paused: a second message waits. The other tenant's agent
    # goes on.
    harness.fake.gate.set()
    await within(asyncio.gather(*(turn.result() for turn in sent)), timeout=60)
    await asyncio.gather(*(agent.send("And then this") for agent in agents))
    for agent in agents:
        await eventually(functools.partial(_status, agent, AgentStatus.PAUSED), what="paused")
        assert (await agent.describe()).queued_messages == 1
    assert (await other.describe()).status == AgentStatus.IDLE


async def _running_calls(harness: Harness, count: int) -> bool:
    return harness.fake.running >= count


async def _listed(client: Client, tenant: str, count: int) -> bool:
    return len(await tenant_agents(client, tenant)) == count


async def _tenant_agent(harness: Harness, tenant: str) -> Agent:
    """An agent of `tenant`, started as CreateAgent starts one (its tenant a search attribute)."""
    now = time.time()
    agent_id = str(uuid.uuid4())
    spec = AgentSpec(agent_id=agent_id, goal="Help with tests.", model="test-model")
    handle = await harness.client.start_workflow(
        AgentWorkflow.run,
        AgentState(spec=spec, created_at=now, updated_at=now),
        id=WORKFLOW_ID_PREFIX + agent_id,
        task_queue=harness.task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(STATUS_ATTRIBUTE, AgentStatus.IDLE),
                SearchAttributePair(TENANT_ATTRIBUTE, tenant),
            ]
        ),
    )
    assert handle.first_execution_run_id is not None
    agent = Agent(harness.client, agent_id, handle.first_execution_run_id)
    harness.agents.append(agent)
    return agent

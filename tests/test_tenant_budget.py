"""A tenant's daily budget: the store's holds (both backends, from many connections at once), and
the real LLM activity against the fake HTTP model, on a worker of its own, refusing the call that
could cross it (that call never reaches the model) and going on once the budget is raised and the
agent resumed.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from engram import WORKFLOW_ID_PREFIX
from engram.activities.llm_stream import LLMActivities
from engram.activities.tenant_budget import TenantBudgets
from engram.llm_settings import LLMEndpoint
from engram.terminal.stop import control_agents
from engram.transcripts import TranscriptStore, budget_commands, open_transcript_store
from engram.transcripts.spend import HOLD_SECONDS, Hold, utc_day
from engram.v1 import agent_pb2
from engram.vocabulary import (
    STATUS_ATTRIBUTE,
    TENANT_ATTRIBUTE,
    AgentStatus,
    Command,
    EventKind,
    Notice,
)
from engram.worker import ensure_search_attributes
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.cost import DAY_SECONDS, until_next_utc_day
from engram.workflows.types import AgentSpec, AgentState
from tests.conftest import finals, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM
from tests.postgres import PostgresServer
from tests.test_auth import bearer, create_key, engram_cli
from tests.test_cost import PRICES
from tests.workflow_harness import Agent, FakeActivities, Harness, eventually, within

# --- the store ----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.e2e)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "transcripts.db")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url


@pytest.fixture
def store(location: str) -> Iterator[TranscriptStore]:
    opened = open_transcript_store(location)
    yield opened
    opened.close()


def _hold(tenant: str, amount: float, *, day: str = "2026-12-05", at: float | None = None) -> Hold:
    return Hold(
        hold_id=str(uuid.uuid4()),
        tenant=tenant,
        day=day,
        amount_usd=amount,
        held_at=time.time() if at is None else at,
    )


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def test_a_hold_is_granted_only_within_the_day_s_budget(store: TranscriptStore) -> None:
    tenant, other = _tenant(), _tenant()
    store.set_tenant_budget(tenant, 1.0)
    first = _hold(tenant, 0.5)
    assert store.hold_spend(first, 0.0).granted
    second = store.hold_spend(_hold(tenant, 0.5), 0.0)
    assert second.granted and second.held_usd == pytest.approx(0.5)
    refused = store.hold_spend(_hold(tenant, 0.25), 0.0)
    assert not refused.granted
    assert (refused.budget_usd, refused.spent_usd) == (1.0, 0.0)
    assert refused.held_usd == pytest.approx(1.0)

    # Settling gives back what the call did not cost; a failed call (0) gives back all of it.
    store.settle_spend(first, 0.125)
    assert store.hold_spend(_hold(tenant, 0.375), 0.0).granted
    assert not store.hold_spend(_hold(tenant, 0.01), 0.0).granted
    # Another tenant and another day are untouched.
    others = _hold(other, 100.0)
    assert store.hold_spend(others, 0.0).granted
    store.settle_spend(others, 2.0)
    assert store.hold_spend(_hold(tenant, 1.0, day="2026-12-06"), 0.0).granted

    days = {d.tenant: d for d in store.tenant_days("2026-12-05")}
    assert days[tenant].own_budget_usd == 1.0
    assert days[tenant].spent_usd == pytest.approx(0.125)
    # Holds are counted by the store's clock, so only live ones show.
    assert days[tenant].held_usd == pytest.approx(0.875)
    assert days[other].own_budget_usd is None and days[other].spent_usd == 2.0


def test_the_default_budget_applies_unless_the_tenant_has_its_own(
    store: TranscriptStore,
) -> None:
    tenant = _tenant()
    assert not store.hold_spend(_hold(tenant, 2.0), 1.0).granted
    store.set_tenant_budget(tenant, 0.0)  # its own: no bound
    unbounded = store.hold_spend(_hold(tenant, 2.0), 1.0)
    assert unbounded.granted and unbounded.budget_usd is None
    store.set_tenant_budget(tenant, None)  # back to the default
    assert not store.hold_spend(_hold(tenant, 2.0), 1.0).granted
    assert store.hold_spend(_hold(tenant, 0.5), 1.0).granted


def test_a_dead_worker_s_hold_lapses(store: TranscriptStore) -> None:
    tenant = _tenant()
    store.set_tenant_budget(tenant, 1.0)
    now = time.time()
    assert store.hold_spend(_hold(tenant, 1.0, at=now - HOLD_SECONDS - 1), 0.0).granted
    later = store.hold_spend(_hold(tenant, 1.0, at=now), 0.0)
    assert later.granted and later.held_usd == 0.0


def test_spend_is_kept_without_a_budget(store: TranscriptStore) -> None:
    tenant = _tenant()
    hold = _hold(tenant, 0.5)
    assert store.hold_spend(hold, 0.0).granted
    store.settle_spend(hold, 0.25)
    store.settle_spend(_hold(tenant, 0.0), 0.25)
    (day,) = [d for d in store.tenant_days("2026-12-05") if d.tenant == tenant]
    assert day.spent_usd == pytest.approx(0.5) and day.own_budget_usd is None


def test_holds_from_many_connections_at_once_never_cross_the_budget(location: str) -> None:
    """Eight stores (eight connections; for SQLite, as many processes would have) hold at once:
    exactly as many holds as fit are granted, never one more."""
    tenant = _tenant()
    opened = [open_transcript_store(location) for _ in range(8)]
    try:
        opened[0].set_tenant_budget(tenant, 5.0)
        granted: list[int] = []
        start = threading.Barrier(len(opened))

        def hold_many(store: TranscriptStore) -> None:
            start.wait()
            # 0.125 is exact in binary: 40 holds are exactly the budget.
            granted.append(
                sum(store.hold_spend(_hold(tenant, 0.125), 0.0).granted for _ in range(20))
            )

        threads = [threading.Thread(target=hold_many, args=(s,)) for s in opened]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sum(granted) == 40
        (day,) = [d for d in opened[0].tenant_days("2026-12-05") if d.tenant == tenant]
        assert day.held_usd == pytest.approx(5.0)
    finally:
        for store in opened:
            store.close()


def test_the_next_utc_day_starts_at_midnight() -> None:
    midnight = 1_796_428_800.0  # 2026-12-05T00:00:00Z
    assert utc_day(midnight) == "2026-12-05" and utc_day(midnight - 1) == "2026-12-04"
    assert until_next_utc_day(midnight - 10) == 11.0
    assert until_next_utc_day(midnight) == DAY_SECONDS + 1.0


# --- the real LLM activity ----------------------------------------------------------------------


class Budgeted:
    """A harness whose LLM calls go through the real activity to the fake HTTP model, holding
    each tenant's budget in a SQLite store of its own."""

    def __init__(self, harness: Harness, store: TranscriptStore) -> None:
        self.harness = harness
        self.store = store

    async def agent(self, tenant: str, model: str = "priced") -> Agent:
        """An agent of `tenant`, started as CreateAgent starts one: its tenant a search
        attribute and its fairness key, which its activities inherit."""
        now = time.time()
        agent_id = str(uuid.uuid4())
        spec = AgentSpec(agent_id=agent_id, goal="Help with tests.", model=model)
        handle = await self.harness.client.start_workflow(
            AgentWorkflow.run,
            AgentState(spec=spec, created_at=now, updated_at=now),
            id=WORKFLOW_ID_PREFIX + agent_id,
            task_queue=self.harness.task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(STATUS_ATTRIBUTE, AgentStatus.IDLE),
                    SearchAttributePair(TENANT_ATTRIBUTE, tenant),
                ]
            ),
            priority=Priority(fairness_key=tenant),
        )
        assert handle.first_execution_run_id is not None
        agent = Agent(self.harness.client, agent_id, handle.first_execution_run_id)
        self.harness.agents.append(agent)
        return agent

    def spent_today(self, tenant: str) -> float:
        days = [d for d in self.store.tenant_days(utc_day()) if d.tenant == tenant]
        return days[0].spent_usd if days else 0.0

    def preload(self, tenant: str, spent: float) -> None:
        """What the tenant spent earlier today."""
        self.store.settle_spend(_hold(tenant, 0.0, day=utc_day()), spent)


@pytest.fixture
async def budgeted(
    workflow_env: WorkflowEnvironment, llm: FakeLLM, tmp_path: Path
) -> AsyncIterator[Budgeted]:
    await ensure_search_attributes(workflow_env.client)
    store = open_transcript_store(tmp_path / "transcripts.db")
    fake = FakeActivities()
    harness = Harness(workflow_env.client, fake, f"engram-tenant-budget-{uuid.uuid4()}")
    real = LLMActivities(
        LLMEndpoint(llm.url), prices=PRICES, store=store, budgets=TenantBudgets(store)
    )
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
            yield Budgeted(harness, store)
        finally:
            await harness.close()
            store.close()


async def _status(agent: Agent) -> str:
    return (await agent.describe()).status


async def _exhausted(agent: Agent) -> bool:
    return await _status(agent) == AgentStatus.BUDGET_EXHAUSTED


async def test_the_call_that_would_cross_the_tenant_s_daily_budget_is_never_sent(
    budgeted: Budgeted, llm: FakeLLM
) -> None:
    tenant = _tenant()
    budgeted.store.set_tenant_budget(tenant, 1.0)
    # $0.99 spent today: the next call's worst case (4096 tokens of output at $10 a million,
    # about $0.041) could cross the $1.
    budgeted.preload(tenant, 0.99)
    agent = await budgeted.agent(tenant)
    before = len(llm.requests)
    sent = await agent.send("Hello there")
    await eventually(lambda: _exhausted(agent), what="budget exhausted")
    assert len(llm.requests) == before, "the call over the tenant's budget reached the model"
    notices = [e for e in (await agent.events()).events if e.code == Notice.BUDGET_EXHAUSTED]
    assert len(notices) == 1
    assert f"tenant {tenant}" in notices[0].text and "daily budget of $1.00" in notices[0].text
    assert "engram keys budget" in notices[0].text

    # Resumed without a larger budget: asked again, refused again, never sent.
    await agent.control(Command.RESUME)
    await eventually(
        lambda: _notices(agent, Notice.BUDGET_EXHAUSTED, 2), what="refused a second time"
    )
    assert await _exhausted(agent) and len(llm.requests) == before

    budgeted.store.set_tenant_budget(tenant, 5.0)
    await agent.control(Command.RESUME)
    result = await within(sent.result())
    assert any(e.kind == EventKind.FINAL_ANSWER for e in result.events)
    assert len(llm.requests) == before + 1
    assert await _status(agent) == AgentStatus.IDLE
    cost = (await agent.describe()).cost_usd
    assert cost > 0 and budgeted.spent_today(tenant) == pytest.approx(0.99 + cost, abs=1e-9)


async def _notices(agent: Agent, code: str, count: int) -> bool:
    return sum(e.code == code for e in (await agent.events()).events) >= count


AT_ONCE = 10


async def test_agents_of_a_tenant_calling_at_once_never_overshoot_its_budget(
    budgeted: Budgeted, llm: FakeLLM
) -> None:
    """Ten agents of one tenant call at once, while the model holds every call for seconds: only
    as many calls as the budget covers at their worst are sent (four of about $0.041 within
    $0.19), the others wait; another tenant's agent is not held up. A larger budget and
    `engram agents resume --tenant` let the others go on."""
    tenant, other_tenant = _tenant(), _tenant()
    budget = 0.19
    budgeted.store.set_tenant_budget(tenant, budget)
    agents = list(await asyncio.gather(*(budgeted.agent(tenant) for _ in range(AT_ONCE))))
    other = await budgeted.agent(other_tenant)
    llm.ttft = 4.0  # every call holds before its first token: all are in flight together
    before = len(llm.requests)
    sent = await asyncio.gather(*(a.send(f"Work on task {i:02d}") for i, a in enumerate(agents)))

    async def settled() -> bool:
        statuses = await asyncio.gather(*(_status(a) for a in agents))
        return statuses.count(AgentStatus.BUDGET_EXHAUSTED) == AT_ONCE - 4

    await eventually(settled, what="six agents refused", timeout=30)
    assert len(llm.requests) - before == 4, "more calls were sent than the budget covers"
    llm.ttft = 0.0
    await within(other.ask("And you?"))  # another tenant goes on meanwhile

    async def answered() -> bool:
        statuses = await asyncio.gather(*(_status(a) for a in agents))
        return statuses.count(AgentStatus.IDLE) == 4

    await eventually(answered, what="the four sent calls answered", timeout=30)
    assert len(llm.requests) - before == 5  # the four, and the other tenant's
    spent = budgeted.spent_today(tenant)
    assert 0 < spent <= budget
    assert budgeted.spent_today(other_tenant) > 0

    budgeted.store.set_tenant_budget(tenant, 10.0)
    resumed = await control_agents(
        budgeted.harness.client, [a.agent_id for a in agents], Command.RESUME
    )
    assert all(error == "" for error in resumed.values())
    for turn in sent:
        result = await within(turn.result(), timeout=60)
        assert any(e.kind == EventKind.FINAL_ANSWER for e in result.events)
    assert len(llm.requests) - before == AT_ONCE + 1
    costs = await asyncio.gather(*(a.describe() for a in agents))
    assert budgeted.spent_today(tenant) == pytest.approx(sum(c.cost_usd for c in costs), abs=1e-9)


# --- engram keys budget -------------------------------------------------------------------------


def _keys_budget(store: TranscriptStore, *argv: str) -> int:
    """`engram keys budget ARGV...` against `store`."""
    parser = argparse.ArgumentParser()
    budget_commands.add_arguments(parser)
    return budget_commands.run(parser.parse_args(argv), store)


def test_engram_keys_budget_sets_shows_and_clears_a_tenant_s_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_transcript_store(tmp_path / "transcripts.db")
    try:
        assert _keys_budget(store, "acme", "--daily-usd", "50") == 0
        out = capsys.readouterr().out
        assert "acme's daily budget is $50.00" in out
        assert "engram agents resume --tenant acme" in out
        store.settle_spend(_hold("acme", 0.0, day=utc_day()), 1.25)
        store.settle_spend(_hold("globex", 0.0, day=utc_day()), 0.5)
        assert _keys_budget(store) == 0
        rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
        assert rows["acme"] == ["$50.00", "$1.25", "$0.00"]
        assert rows["globex"] == ["workers'", "default", "$0.5", "$0.00"]
        assert _keys_budget(store, "acme", "--clear") == 0
        assert "the workers' default applies" in capsys.readouterr().out
        assert _keys_budget(store, "acme", "--daily-usd", "-1") == 2
        assert _keys_budget(store, "--daily-usd", "5") == 2
        assert "name the tenant" in capsys.readouterr().err
    finally:
        store.close()


# --- a deployment, as the README sets it up ------------------------------------------------------


def test_a_tenant_s_daily_budget_as_the_readme_sets_it(llm: FakeLLM, tmp_path: Path) -> None:
    """An engine whose workers give tenants $0.001 a day, below a gpt-4o-mini call's worst case
    (4096 tokens of output at $0.60 a million, about $0.0025): an agent created with a tenant's
    key waits, its call never sent; `engram keys budget` and `engram agents resume` as the README
    writes them let it go on, and the spend shows."""
    tenant = _tenant()
    key = create_key(tmp_path, tenant)
    engine = Engine(tmp_path, llm.url, ENGRAM_TENANT_DAILY_BUDGET_USD="0.001").start()
    try:
        stub = engine.stub()
        agent_id = stub.CreateAgent(
            agent_pb2.CreateAgentRequest(goal="Help the user.", model="gpt-4o-mini"),
            metadata=bearer(key),
        ).agent_id
        before = len(llm.requests)
        with ThreadPoolExecutor(1) as pool:
            turn = pool.submit(
                lambda: list(
                    stub.Chat(
                        iter([user_message(agent_id, "Hello there")]),
                        metadata=bearer(key),
                        timeout=120,
                    )
                )
            )

            def status() -> str:
                request = agent_pb2.GetAgentRequest(agent_id=agent_id)
                return str(stub.GetAgent(request, metadata=bearer(key)).status)

            deadline = time.monotonic() + 60
            while status() != AgentStatus.BUDGET_EXHAUSTED:
                assert time.monotonic() < deadline, f"still {status()}"
                time.sleep(0.2)
            assert len(llm.requests) == before, "the call over the tenant's budget was sent"

            data_dir = ("--data-dir", str(tmp_path))
            temporal = ("--temporal-address", f"localhost:{engine.temporal_port}")
            raised = engram_cli("keys", "budget", tenant, "--daily-usd", "50", *data_dir)
            assert raised.returncode == 0, raised.stderr
            resumed = engram_cli("agents", "resume", "--tenant", tenant, *temporal)
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            assert f"{agent_id}  resumed" in resumed.stdout
            messages = turn.result(timeout=120)
        assert finals(messages), messages
        assert len(llm.requests) == before + 1
        listing = engram_cli("keys", "budget", tenant, *data_dir)
        (row,) = [line.split() for line in listing.stdout.splitlines() if line.startswith(tenant)]
        assert row[1] == "$50.00" and row[2] != "$0.00", listing.stdout
    finally:
        engine.stop()

"""Fork, rewind and recall keep to tenants: another tenant's agent cannot be forked, rewound or
searched (NOT_FOUND, in the very words of a missing agent), a fork and a rewind's branch belong to
the caller's tenant, and `recall` finds nothing of another tenant's agents. A real engine whose
store holds keys made by `engram keys create`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import pytest
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import TENANT_ATTRIBUTE
from tests.conftest import eventually, finals, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM
from tests.test_auth import Metadata, bearer, code_of, create_key
from tests.test_recall import model


@dataclass
class Tenants:
    engine: Engine
    keys: dict[str, Metadata]

    def stub(self) -> agent_pb2_grpc.AgentServiceStub:
        return self.engine.stub()


@pytest.fixture(scope="module")
def tenants(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    data_dir = tmp_path_factory.mktemp("fork-tenants")
    wanted = {"acme": ("acme",), "globex": ("globex",), "admin": ("ops", "--role", "admin")}
    with ThreadPoolExecutor(len(wanted)) as pool:  # each CLI run is mostly interpreter start-up
        futures = {name: pool.submit(create_key, data_dir, *args) for name, args in wanted.items()}
        made = {name: bearer(future.result()) for name, future in futures.items()}
    engine = Engine(data_dir, fake_llm.url).start()
    yield Tenants(engine, made)
    engine.stop()


def create(stub: agent_pb2_grpc.AgentServiceStub, key: Metadata) -> str:
    request = agent_pb2.CreateAgentRequest(goal="Help the user.", model="fake-model")
    return str(stub.CreateAgent(request, metadata=key).agent_id)


def talk(
    stub: agent_pb2_grpc.AgentServiceStub, key: Metadata, agent_id: str, content: str
) -> list[agent_pb2.ServerMessage]:
    return list(stub.Chat(iter([user_message(agent_id, content)]), metadata=key, timeout=60))


def listed(stub: agent_pb2_grpc.AgentServiceStub, key: Metadata) -> set[str]:
    page = stub.ListAgents(agent_pb2.ListAgentsRequest(page_size=1000), metadata=key)
    return {a.agent_id for a in page.agents}


def tenant_of(engine: Engine, agent_id: str) -> tuple[str, str]:
    """The agent's tenant as its workflow carries it: (search attribute, memo)."""

    async def describe() -> tuple[str, str]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        described = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).describe()
        memo = await described.memo_value("tenant", "")
        return described.typed_search_attributes.get(TENANT_ATTRIBUTE) or "", str(memo)

    return asyncio.run(describe())


def test_another_tenant_cannot_fork_rewind_or_search_and_a_fork_is_the_callers(
    tenants: Tenants, llm: FakeLLM
) -> None:
    llm.reply = model
    stub, keys = tenants.stub(), tenants.keys
    acme, globex, admin = keys["acme"], keys["globex"], keys["admin"]
    code = f"damson{uuid.uuid4().hex[:10]}"
    agent = create(stub, acme)
    said = [f"Please keep this in mind: the safe code is {code}.", "small talk", "more talk"]
    ends = [talk(stub, acme, agent, s)[-1].sequence_id for s in said]
    missing = str(uuid.uuid4())

    def attempts(agent_id: str) -> dict[str, Callable[[Metadata], object]]:
        return {
            "ForkAgent": lambda md: stub.ForkAgent(
                agent_pb2.ForkAgentRequest(agent_id=agent_id, at_sequence=ends[0]), metadata=md
            ),
            "RewindAgent": lambda md: stub.RewindAgent(
                agent_pb2.RewindAgentRequest(agent_id=agent_id, to_sequence=ends[0]), metadata=md
            ),
            "SearchHistory": lambda md: stub.SearchHistory(
                agent_pb2.SearchHistoryRequest(agent_id=agent_id, query=code), metadata=md
            ),
        }

    theirs, nobody = attempts(agent), attempts(missing)
    for name, attempt in theirs.items():
        foreign = code_of(lambda c=attempt: c(globex))  # type: ignore[misc]
        absent = code_of(lambda c=nobody[name]: c(globex))  # type: ignore[misc]
        assert foreign[0] == absent[0] == grpc.StatusCode.NOT_FOUND, (name, foreign, absent)
        assert foreign[1].replace(agent, "ID") == absent[1].replace(missing, "ID"), name
    # An admin reads across tenants but acts only on its own: a fork or rewind is an act.
    for name in ("ForkAgent", "RewindAgent"):
        assert code_of(lambda n=name: theirs[n](admin))[0] == grpc.StatusCode.NOT_FOUND, name  # type: ignore[misc]
    # None of it changed the agent.
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent), metadata=acme).turns
    assert [t.user for t in turns] == said

    # The owner's fork is the owner's tenant's agent, and only theirs.
    fork_id = stub.ForkAgent(
        agent_pb2.ForkAgentRequest(agent_id=agent, at_sequence=ends[0]), metadata=acme
    ).agent_id
    shown = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=fork_id), metadata=acme)
    assert (shown.forked_from, shown.fork_sequence) == (agent, ends[0])
    assert tenant_of(tenants.engine, fork_id) == ("acme", "acme")
    eventually(lambda: fork_id in listed(stub, acme), what="the fork in its tenant's listing")
    assert fork_id not in listed(stub, globex)
    for call in (
        lambda: stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=fork_id), metadata=globex),
        lambda: talk(stub, globex, fork_id, "let me in"),
        lambda: stub.ForkAgent(agent_pb2.ForkAgentRequest(agent_id=fork_id), metadata=globex),
    ):
        assert code_of(call)[0] == grpc.StatusCode.NOT_FOUND
    assert not llm.requests_for("let me in")
    # It remembers what was before its point, through recall too.
    assert code in finals(talk(stub, acme, fork_id, f"recall {code}"))[0]

    # A rewind's branch too.
    branch = stub.RewindAgent(
        agent_pb2.RewindAgentRequest(agent_id=agent, to_sequence=ends[1]), metadata=acme
    ).branch_agent_id
    assert tenant_of(tenants.engine, branch) == ("acme", "acme")
    for call in (
        lambda: stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=branch), metadata=globex),
        lambda: stub.RewindAgent(agent_pb2.RewindAgentRequest(agent_id=branch), metadata=globex),
    ):
        assert code_of(call)[0] == grpc.StatusCode.NOT_FOUND
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=branch), metadata=acme).turns
    assert [t.user for t in turns] == said


def test_recall_finds_nothing_of_another_tenants_agents(tenants: Tenants, llm: FakeLLM) -> None:
    llm.reply = model
    stub, acme, globex = tenants.stub(), tenants.keys["acme"], tenants.keys["globex"]
    code = f"rowan{uuid.uuid4().hex[:10]}"
    theirs = create(stub, acme)
    talk(stub, acme, theirs, f"Please keep this in mind: the alarm code is {code}.")
    ours = create(stub, globex)
    talk(stub, globex, ours, "Good morning.")

    told = finals(talk(stub, globex, ours, f"recall {code}"))
    assert told == [f"Found: nothing found for {code!r}"]
    hits = stub.SearchHistory(
        agent_pb2.SearchHistoryRequest(agent_id=ours, query="alarm code"), metadata=globex
    ).hits
    assert hits == []
    # The owner's agent finds it, so the words were there to find.
    assert code in finals(talk(stub, acme, theirs, "recall alarm code"))[0]

"""Providers fail, turns go on: named endpoints, fallback models, the circuit breaker, a reply cut
off on one model and finished on the next, and a long rate limit waited out on a durable timer.

The end-to-end tests run real processes (tests/cluster.py) against several fake endpoints.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Iterator

import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from engram import llm_settings
from engram.activities.failover import CircuitBreaker
from engram.gateway import validation
from engram.gateway.agent_config import agent_settings
from engram.gateway.errors import GatewayError
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import AgentStatus, EventKind, Notice
from engram.workflows.llm_outcome import failed
from engram.workflows.settings import settings_from_config
from engram.workflows.types import EditInput, StreamPiece
from tests.cluster import Cluster
from tests.conftest import Reader, create_agent, eventually, finals, text_of, unique, user_message
from tests.fake_llm import FakeLLM
from tests.workflow_harness import Harness, echo

REPLY = "".join(f"w{i} " for i in range(40))
QUOTA_SECONDS = 20


# --- units ------------------------------------------------------------------------------------


def test_the_breaker_opens_after_failures_and_probes_after_its_cool_down() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown=30, clock=lambda: now[0])
    breaker.failed()
    assert breaker.allow() and not breaker.open
    breaker.failed()
    assert breaker.open and not breaker.allow()
    now[0] = 31
    # One probe only; its failure opens the circuit for another cool-down.
    assert breaker.allow() and not breaker.allow()
    breaker.failed()
    assert not breaker.allow()
    now[0] = 62
    assert breaker.allow()
    breaker.succeeded()
    assert not breaker.open and breaker.allow() and breaker.allow()


def test_named_endpoints_come_from_flags_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = argparse.ArgumentParser()
    llm_settings.add_arguments(parser)
    monkeypatch.setenv("ENGRAM_LLM_ENDPOINTS", "groq=http://g/v1, local=http://l/v1")
    monkeypatch.setenv("ENGRAM_LLM_GROQ_API_KEY", "secret")
    default = llm_settings.LLMEndpoint("http://default/v1")
    args = parser.parse_args(["--llm-endpoint-continuation", "local=prefill"])
    endpoints = llm_settings.endpoints_from_args(args, default)
    groq, model = endpoints.route("groq/llama-3.1-8b")
    assert (groq.base_url, groq.api_key, groq.continuation, model) == (
        "http://g/v1",
        "secret",
        "off",
        "llama-3.1-8b",
    )
    assert endpoints.route("local/qwen")[0].continuation == "prefill"
    # Only a configured name is an endpoint: other slashes are part of the model's name.
    assert endpoints.route("meta-llama/Llama-3") == (default, "meta-llama/Llama-3")
    assert endpoints.route("gpt-4o") == (default, "gpt-4o")
    flags = parser.parse_args(["--llm-endpoint", "x=http://x/v1"])
    assert set(llm_settings.endpoints_from_args(flags, default).named) == {"x"}
    with pytest.raises(SystemExit):
        llm_settings.endpoints_from_args(parser.parse_args(["--llm-endpoint", "nourl"]), default)


def test_fallback_models_are_set_at_creation_and_by_an_edit() -> None:
    config = agent_pb2.AgentConfig(fallback_models=["groq/llama", "gpt-4o-mini"])
    settings = agent_settings(config)
    assert settings.fallback_models == ["groq/llama", "gpt-4o-mini"]
    # A state that kept only the config as proto3 JSON reads the same chain.
    assert settings_from_config(MessageToDict(config)) == settings
    request = agent_pb2.CreateAgentRequest(goal="g", model="m", config=config)
    assert validation.create_request(request, "") == "m"
    request.config.fallback_models.append("")
    with pytest.raises(GatewayError):
        validation.create_request(request, "")

    patch = Struct()
    patch.update({"fallback_models": ["b/small"]})
    edit = validation.edit(agent_pb2.Edit(patch=patch))[0]
    assert edit == EditInput(fallback_models=["b/small"])
    patch.update({"fallback_models": "b/small"})
    with pytest.raises(GatewayError, match="fallback_models"):
        validation.edit(agent_pb2.Edit(patch=patch))


async def test_a_quota_wait_voids_what_the_call_streamed_and_calls_again(harness: Harness) -> None:
    fake = harness.fake
    quota = failed([StreamPiece(EventKind.TEXT, "half a ")], "LLM_HTTP_429", "out of quota")
    quota.quota_wait = 1.0
    replies = [quota]
    fake.reply = lambda request: replies.pop() if replies else echo(request)
    agent = await harness.create_agent(config={"fallbackModels": ["b/m"]})
    turn = await agent.ask("hello", "m1")
    assert [r.fallback_models for r in fake.requests] == [["b/m"], ["b/m"]]
    assert all(r.wait_for_quota for r in fake.requests)
    kinds = [(e.kind, e.code) for e in turn.events]
    waiting = kinds.index((EventKind.STATUS, Notice.WAITING_FOR_QUOTA))
    assert kinds[waiting - 1] == (EventKind.RESTART, "")
    assert turn.events[-1].text == "You said: hello"
    assert (await agent.describe()).status == AgentStatus.IDLE


# --- end to end -------------------------------------------------------------------------------


class Endpoints:
    def __init__(self) -> None:
        self.down = FakeLLM().start()
        self.flaky = FakeLLM(token_delay=0.01, reply=lambda _: REPLY).start()
        self.good = FakeLLM(token_delay=0.01, reply=lambda _: REPLY).start()
        self.limited = FakeLLM(reply=lambda _: REPLY).start()
        self.down.fail_next(503, times=1_000_000, message="down for maintenance")

    def all(self) -> list[FakeLLM]:
        return [self.down, self.flaky, self.good, self.limited]


@pytest.fixture(scope="module")
def endpoints() -> Iterator[Endpoints]:
    made = Endpoints()
    yield made
    for fake in made.all():
        fake.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, endpoints: Endpoints) -> Iterator[Cluster]:
    e = endpoints
    named = {
        "down": e.down.url,
        "flaky": e.flaky.url,
        "good": e.good.url,
        # The same server, for an endpoint that cannot continue a partial reply.
        "goodoff": e.good.url,
        "limited": e.limited.url,
    }
    c = Cluster(
        tmp_path_factory.mktemp("failover"),
        e.good.url,
        ENGRAM_LLM_ENDPOINTS=",".join(f"{k}={v}" for k, v in named.items()),
        ENGRAM_LLM_GOOD_CONTINUATION="prefill",
        ENGRAM_LLM_BREAKER_FAILURES="2",
        ENGRAM_LLM_BREAKER_COOLDOWN="300",
    )
    c.start_temporal()
    c.start_worker()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def stub(cluster: Cluster) -> agent_pb2_grpc.AgentServiceStub:
    _, address = cluster.start_gateway()
    return cluster.stub(address)


def ask(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, content: str) -> Reader:
    reader = Reader(stub.Chat(iter([user_message(agent_id, content)]), timeout=90))
    assert reader.done.wait(60) and reader.error is None, reader.error
    return reader


def with_fallbacks(stub: agent_pb2_grpc.AgentServiceStub, model: str, *fallbacks: str) -> str:
    config = agent_pb2.AgentConfig(fallback_models=list(fallbacks))
    return create_agent(stub, model=model, config=config)


def notices(messages: list[agent_pb2.ServerMessage], status: str) -> list[str]:
    return [m.status.message for m in messages if m.status.status == status]


def assert_whole(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, reader: Reader) -> None:
    """One reply, contiguous sequence ids, and what the client saw is what was stored."""
    messages = reader.messages
    seqs = [m.sequence_id for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert finals(messages) == [REPLY]
    stored = [
        m
        for m in stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=10)
        if m.message_id == messages[0].message_id
    ]
    assert [m.SerializeToString() for m in stored] == [m.SerializeToString() for m in messages]


def test_a_failing_endpoint_is_skipped_once_its_circuit_opens(
    stub: agent_pb2_grpc.AgentServiceStub, endpoints: Endpoints
) -> None:
    agent_id = with_fallbacks(stub, "down/big", "good/small")
    answered = []
    for i in range(4):
        reader = ask(stub, agent_id, unique(f"turn {i}"))
        answered.append(finals(reader.messages) == [REPLY])
        if i == 0:
            assert notices(reader.messages, "model_failover") == [
                "down/big failed (LLM endpoint "
                f"{endpoints.down.url} answered HTTP 503: down for maintenance); "
                "good/small answers instead"
            ]
            assert_whole(stub, agent_id, reader)
    assert all(answered)
    # Two failures open the circuit: later turns go straight to the fallback.
    assert len(endpoints.down.requests) == 2
    assert [r["model"] for r in endpoints.good.requests[-4:]] == ["small"] * 4


def test_a_reply_cut_off_goes_on_on_the_next_model(
    stub: agent_pb2_grpc.AgentServiceStub, endpoints: Endpoints
) -> None:
    # The next endpoint continues the partial reply: only the rest is streamed.
    agent_id = with_fallbacks(stub, "flaky/m", "good/m")
    endpoints.flaky.cut_after = 10
    continued = endpoints.good.continued
    reader = ask(stub, agent_id, unique("cut off, then continued"))
    assert_whole(stub, agent_id, reader)
    assert text_of(reader.messages) == REPLY
    assert len(notices(reader.messages, "model_failover")) == 1
    assert not notices(reader.messages, "restarting")
    assert endpoints.good.continued == continued + 1
    shown = endpoints.good.requests[-1]["messages"][-1]
    assert shown["role"] == "assistant" and REPLY.startswith(shown["content"]) and shown["content"]

    # One that cannot: the reply restarts there, once.
    agent_id = with_fallbacks(stub, "flaky/m", "goodoff/m")
    endpoints.flaky.cut_after = 10
    reader = ask(stub, agent_id, unique("cut off, then restarted"))
    assert_whole(stub, agent_id, reader)
    assert len(notices(reader.messages, "restarting")) == 1
    assert endpoints.good.requests[-1]["messages"][-1]["role"] == "user"


@pytest.mark.chaos
def test_a_long_rate_limit_is_waited_out_on_a_timer(
    cluster: Cluster, stub: agent_pb2_grpc.AgentServiceStub, endpoints: Endpoints
) -> None:
    agent_id = create_agent(stub, model="limited/m")
    endpoints.limited.fail_next(429, message="quota exhausted", retry_after=QUOTA_SECONDS)
    content = unique("wait for quota")
    started = time.monotonic()
    Reader(stub.Chat(iter([user_message(agent_id, content)]), timeout=90))

    def status() -> str:
        return str(stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).status)

    eventually(lambda: status() == "waiting_for_quota", timeout=20, what="the quota wait")
    # Everything dies during the wait; the timer is Temporal's, and fires after the restart.
    for process in cluster.processes:
        process.send_signal(signal.SIGKILL)
        process.wait()
    cluster.kill_temporal()
    cluster.start_temporal()
    cluster.start_worker()
    _, address = cluster.start_gateway()
    stub = cluster.stub(address)
    eventually(lambda: status() == "idle", timeout=QUOTA_SECONDS + 30, what="the turn to end")
    assert time.monotonic() - started >= QUOTA_SECONDS
    assert len(endpoints.limited.requests_for(content)) == 2
    replayed = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=10))
    assert notices(replayed, "waiting_for_quota")
    assert finals(replayed) == [REPLY]

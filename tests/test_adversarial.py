"""An adversary's view of a secured engine: every AgentService RPC with no key, a revoked, an
expired and another tenant's key; malformed requests on every RPC; concurrent creates against the
quota; and a client that walks away from its Chat stream."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM
from tests.test_auth import Metadata, bearer, code_of, create_key, engram_cli, every_method

QUOTA = 3


class Adversary:
    def __init__(self, engine: Engine, keys: dict[str, str]) -> None:
        self.engine = engine
        self.keys = keys

    def stub(self) -> agent_pb2_grpc.AgentServiceStub:
        return self.engine.stub()


@pytest.fixture(scope="module")
def adversary(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adversary]:
    data_dir = tmp_path_factory.mktemp("adversary")
    wanted = {
        "acme": ("acme",),
        "globex": ("globex",),
        "revoked": ("acme",),
        "expired": ("acme", "--expires", "2s"),
        "quota": ("quota",),
    }
    with ThreadPoolExecutor(len(wanted)) as pool:
        futures = {name: pool.submit(create_key, data_dir, *args) for name, args in wanted.items()}
        made = {name: future.result() for name, future in futures.items()}
    revoked_id = made["revoked"].split("_")[1]
    assert engram_cli("keys", "revoke", revoked_id, "--data-dir", str(data_dir)).returncode == 0
    engine = Engine(data_dir, fake_llm.url, ENGRAM_MAX_AGENTS_PER_TENANT=str(QUOTA)).start()
    yield Adversary(engine, made)
    engine.stop()


def test_no_revoked_or_expired_key_gets_in(adversary: Adversary) -> None:
    time.sleep(2.1)  # the expired key has expired by now
    with grpc.insecure_channel(adversary.engine.address) as channel:
        methods = list(every_method(channel))
        for name_of_key, metadata in (
            ("none", ()),
            ("revoked", bearer(adversary.keys["revoked"])),
            ("expired", bearer(adversary.keys["expired"])),
        ):
            for name, call in methods:
                code, details = code_of(lambda c=call, m=metadata: c(m))  # type: ignore[misc]
                assert code == grpc.StatusCode.UNAUTHENTICATED, (name_of_key, name, details)
                if name_of_key != "none":
                    assert name_of_key in details, (name, details)


def test_another_tenants_key_finds_nothing(adversary: Adversary) -> None:
    stub, keys = adversary.stub(), adversary.keys
    agent = stub.CreateAgent(
        agent_pb2.CreateAgentRequest(goal="acme's", model="m"), metadata=bearer(keys["acme"])
    ).agent_id
    theirs = bearer(keys["globex"])
    calls: dict[str, Callable[[Metadata], object]] = {
        "GetAgent": lambda md: stub.GetAgent(
            agent_pb2.GetAgentRequest(agent_id=agent), metadata=md
        ),
        "GetHistory": lambda md: stub.GetHistory(
            agent_pb2.GetHistoryRequest(agent_id=agent), metadata=md
        ),
        "Replay": lambda md: list(
            stub.Replay(agent_pb2.ReplayRequest(agent_id=agent), metadata=md, timeout=10)
        ),
        "Chat": lambda md: list(
            stub.Chat(iter([user_message(agent, "hi")]), metadata=md, timeout=10)
        ),
        "ControlAgent": lambda md: stub.ControlAgent(
            agent_pb2.ControlAgentRequest(agent_id=agent, pause=agent_pb2.Pause()), metadata=md
        ),
        "SetAgentStatus": lambda md: stub.SetAgentStatus(
            agent_pb2.SetAgentStatusRequest(agent_id=agent, status="paused"), metadata=md
        ),
        "DeleteAgent": lambda md: stub.DeleteAgent(
            agent_pb2.DeleteAgentRequest(agent_id=agent, force=True), metadata=md
        ),
        "CreateSchedule": lambda md: stub.CreateSchedule(
            agent_pb2.CreateScheduleRequest(agent_id=agent, name="s", cron=["0 * * * *"]),
            metadata=md,
        ),
        "ListSchedules": lambda md: stub.ListSchedules(
            agent_pb2.ListSchedulesRequest(agent_id=agent), metadata=md
        ),
        "DeleteSchedule": lambda md: stub.DeleteSchedule(
            agent_pb2.DeleteScheduleRequest(agent_id=agent, name="s"), metadata=md
        ),
    }
    for name, call in calls.items():
        code, details = code_of(lambda c=call: c(theirs))  # type: ignore[misc]
        assert code == grpc.StatusCode.NOT_FOUND, (name, code, details)
    listed = stub.ListAgents(agent_pb2.ListAgentsRequest(), metadata=theirs)
    assert agent not in {a.agent_id for a in listed.agents}
    owner = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent), metadata=bearer(keys["acme"]))
    assert owner.goal == "acme's" and owner.status != "deleted"


def malformed(method: str) -> list[object]:
    """Requests no client should send: empty and oversized ids, unknown enums and oneofs."""
    long_id = "x" * 5000
    bad_ids = ["", long_id, "../../etc", str(uuid.uuid4()) + "\0"]
    service = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
    request_type: Any = message_factory.GetMessageClass(service.methods_by_name[method].input_type)
    requests: list[object] = [request_type()]
    fields = request_type.DESCRIPTOR.fields_by_name
    for field in ("agent_id", "parent_id", "name", "status", "status_filter", "page_token"):
        if field in fields and fields[field].type == fields[field].TYPE_STRING:
            requests += [request_type(**{field: bad}) for bad in bad_ids]
    if "page_size" in fields:
        requests.append(request_type(page_size=-1))
    return requests


def test_malformed_requests_are_invalid_not_internal(adversary: Adversary) -> None:
    key = bearer(adversary.keys["acme"])
    with grpc.insecure_channel(adversary.engine.address) as channel:
        service = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            for request in malformed(method.name):
                code, details = code_of(lambda: invoke(channel, method, path, request, key))  # noqa: B023
                assert code not in (
                    grpc.StatusCode.INTERNAL,
                    grpc.StatusCode.UNKNOWN,
                ), (method.name, request, details)
        # Bytes that are no protobuf at all.
        garbage = channel.unary_unary(
            f"/{service.full_name}/GetAgent", request_serializer=bytes, response_deserializer=bytes
        )
        code, _ = code_of(lambda: garbage(b"\xff\xff\xff", metadata=key, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Traceback" not in adversary.engine.log()


def invoke(channel: grpc.Channel, method: Any, path: str, request: Any, key: Metadata) -> object:
    codec: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": bytes,
    }
    if method.client_streaming:
        return list(channel.stream_stream(path, **codec)(iter([request]), metadata=key, timeout=10))
    if method.server_streaming:
        return list(channel.unary_stream(path, **codec)(request, metadata=key, timeout=10))
    return channel.unary_unary(path, **codec)(request, metadata=key, timeout=10)


def test_concurrent_creates_respect_the_quota(adversary: Adversary) -> None:
    stub, key = adversary.stub(), bearer(adversary.keys["quota"])
    request = agent_pb2.CreateAgentRequest(goal="g", model="m")
    with ThreadPoolExecutor(12) as pool:
        codes = list(
            pool.map(lambda _: code_of(lambda: stub.CreateAgent(request, metadata=key)), range(12))
        )
    assert sum(1 for c, _ in codes if c == grpc.StatusCode.OK) == QUOTA, codes
    assert all(c == grpc.StatusCode.RESOURCE_EXHAUSTED for c, _ in codes if c != grpc.StatusCode.OK)


def test_a_cancelled_chat_stream_is_one_quiet_line(adversary: Adversary, llm: FakeLLM) -> None:
    stub, key = adversary.stub(), bearer(adversary.keys["acme"])
    agent = stub.CreateAgent(
        agent_pb2.CreateAgentRequest(goal="g", model="m"), metadata=key
    ).agent_id
    llm.token_delay = 0.05  # the turn is still streaming when the client leaves
    before = len(adversary.engine.log())
    release = threading.Event()

    def messages() -> Iterator[agent_pb2.ClientMessage]:
        yield user_message(agent, "tell me a long story")
        release.wait(10)

    stream = stub.Chat(messages(), metadata=key, timeout=30)
    next(iter(stream))  # the turn is under way
    stream.cancel()
    release.set()
    time.sleep(1.5)
    added = adversary.engine.log()[before:]
    assert "Traceback" not in added, added
    assert sum(1 for line in added.splitlines() if "ancel" in line) <= 1, added

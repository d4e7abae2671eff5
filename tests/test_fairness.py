"""Tenants that cannot hurt each other: one tenant's flood and another's turns on a real engine.

Tenant a pushes messages down 8 Chat streams (its own process, as a client would) while tenant b
chats; b's time to first token is held to a bound relative to its idle time measured just before,
in the same engine. And a schedule cannot fire more often than once a minute.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from bench.security import Client, delete_agents, new_key, push_messages
from engram.v1 import agent_pb2
from tests.engine import Engine
from tests.fake_llm import FakeLLM

SAMPLES = 15
# b's median TTFT under a's flood, against its idle median: without fairness it was 4.9 times.
BOUND = 3.0


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, str, str]]:
    llm = FakeLLM().start()
    data_dir = tmp_path_factory.mktemp("fair")
    a_key, b_key = new_key(data_dir, "a"), new_key(data_dir, "b")
    engine = Engine(data_dir, llm.url).start()
    yield engine, a_key, b_key
    engine.stop()
    llm.stop()


def median_ttft(client: Client, agent_id: str) -> float:
    return statistics.median(client.ttft(agent_id) for _ in range(SAMPLES))


@pytest.mark.timed
def test_a_flooding_tenant_leaves_another_tenants_turns_prompt(
    tenants: tuple[Engine, str, str],
) -> None:
    engine, a_key, b_key = tenants
    b = Client(engine, b_key)
    agent_id = b.create()[0]
    for _ in range(3):
        b.ttft(agent_id)  # warm up
    idle = median_ttft(b, agent_id)
    flood = multiprocessing.get_context("spawn").Process(
        target=push_messages, args=(engine.address, a_key, 8, 10_000), daemon=True
    )
    flood.start()
    try:
        time.sleep(3)  # a's agents made, their queues filling
        flooded = median_ttft(b, agent_id)
    finally:
        flood.kill()
        flood.join(5)
        delete_agents(engine.address, a_key)
    assert flooded < BOUND * idle, f"b's TTFT p50 {flooded * 1000:.0f} ms, idle {idle * 1000:.0f}"


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def test_a_schedule_fires_at_most_once_a_minute(tenants: tuple[Engine, str, str]) -> None:
    engine, _, b_key = tenants
    b = Client(engine, b_key)
    agent_id = b.create()[0]

    def create(name: str, every: int = 0, cron: str = "") -> Callable[[], object]:
        request = agent_pb2.CreateScheduleRequest(
            agent_id=agent_id,
            name=name,
            every=Duration(seconds=every) if every else None,
            cron=[cron] if cron else [],
        )
        return lambda: b.stub.CreateSchedule(request, metadata=b.metadata)

    code, message = code_of(create("fast", every=59))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at least 60 s" in message
    code, message = code_of(create("cron", cron="* * * * * * *"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "more than once a minute" in message
    assert code_of(create("minutely", every=60))[0] == grpc.StatusCode.OK
    assert code_of(create("at-second-5", cron="5 * * * * * *"))[0] == grpc.StatusCode.OK
    listed = b.stub.ListSchedules(
        agent_pb2.ListSchedulesRequest(agent_id=agent_id), metadata=b.metadata
    ).schedules
    assert {s.name for s in listed} <= {"minutely", "at-second-5"}

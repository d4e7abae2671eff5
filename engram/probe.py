"""`engram probe gateway|worker`: health checks for containers and scripts (exit 0 when healthy)."""

from __future__ import annotations

import argparse

import grpc
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from engram import TASK_QUEUE
from engram.temporal_connection import TemporalSettings
from engram.v1 import agent_pb2, agent_pb2_grpc


def probe_gateway(address: str, timeout: float = 5.0) -> None:
    """The gateway answers, and can reach Temporal: a one-agent ListAgents goes all the way."""
    with grpc.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        stub.ListAgents(agent_pb2.ListAgentsRequest(page_size=1), timeout=timeout)


async def probe_worker(settings: TemporalSettings) -> bool:
    """Some worker is polling Engram's task queue."""
    client = await settings.connect()
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(response.pollers) > 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parts = parser.add_subparsers(dest="part", required=True)
    gateway = parts.add_parser("gateway")
    gateway.add_argument("--address", default="localhost:50051")
    TemporalSettings.add_arguments(parts.add_parser("worker"))

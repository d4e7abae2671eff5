"""`engram probe gateway|worker`: health checks for containers and scripts (exit 0 when healthy)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from engram import TASK_QUEUE
from engram.gateway.health import AGENT_SERVICE
from engram.temporal_connection import TemporalSettings


def probe_gateway(address: str, timeout: float = 5.0, tls_ca: str = "") -> None:
    """The gateway's standard health service says AgentService is SERVING, which it does only
    while the gateway can reach Temporal. `tls_ca`: the CA of a gateway that serves TLS."""
    channel = (
        grpc.secure_channel(
            address, grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        )
        if tls_ca
        else grpc.insecure_channel(address)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=AGENT_SERVICE), timeout=timeout
            )
        except grpc.RpcError as err:
            # The error is also the call: its status, without the repr's debug string.
            if not isinstance(err, grpc.Call):
                raise
            status = f"{err.code().name}: {err.details()}"
            raise RuntimeError(f"gateway at {address}: {status}") from None
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        raise RuntimeError(f"gateway at {address} reports {name}")


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
    gateway.add_argument(
        "--tls-ca",
        default=os.environ.get("ENGRAM_PROBE_TLS_CA", ""),
        help="for a gateway serving TLS: the CA certificate (PEM) to check it with",
    )
    TemporalSettings.add_arguments(parts.add_parser("worker"))

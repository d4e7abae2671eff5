"""Worker Deployment Versioning, in process on the real dev server: agents pinned to the worker
version they started on, moving to the deployment's current version only when they continue as
new between turns; `engram deployment set-current`, the operator's step; and the flags of
`engram worker` that opt in."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TaskQueueType, VersioningBehavior
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    UpdateWorkflowExecutionOptionsRequest,
)
from temporalio.client import Client
from temporalio.common import PinnedVersioningOverride, WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment

from engram import WORKFLOW_ID_PREFIX
from engram.cli import main
from engram.deployment import set_current
from engram.worker import deployment
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import LLMRequest
from tests.cluster import Cluster
from tests.conftest import Reader, create_agent, finals, user_message
from tests.fake_llm import FakeLLM
from tests.workflow_harness import Agent, FakeActivities, Harness, eventually, within

# Seconds to wait for the server to see a new version's workers.
SEEN_WITHIN = 20.0
PINNED = VersioningBehavior.VERSIONING_BEHAVIOR_PINNED


async def engram_deployment_set_current(
    client_target: str, name: str, build_id: str, wait: float = SEEN_WITHIN
) -> int:
    """`engram deployment set-current NAME BUILD_ID` against the test server; its exit code."""
    argv = ["deployment", "set-current", name, build_id, "--temporal-address", client_target]
    with pytest.raises(SystemExit) as exited:
        # The command runs its own event loop.
        await asyncio.to_thread(main, [*argv, "--no-tls", "--wait", str(wait)])
    code = exited.value.code
    assert isinstance(code, int)
    return code


async def version_of(agent: Agent) -> tuple[str, str, int]:
    """(run id, build id, versioning behavior) of the agent's current run, as Temporal has it."""
    described = await within(agent.handle.describe())
    info = described.raw_description.workflow_execution_info.versioning_info
    return described.run_id or "", info.deployment_version.build_id, info.behavior


def prompt(request: LLMRequest) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in request.messages]


async def test_pinned_agents_move_to_the_current_version_only_between_turns(
    workflow_env: WorkflowEnvironment, capfd: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    client = workflow_env.client
    name = f"engram-{uuid.uuid4().hex[:12]}"
    queue = f"engram-test-{uuid.uuid4()}"
    # One task queue, two worker versions, each with its own scripted LLM: which one answered a
    # turn says which version ran it (a pinned agent's activities go to its version's workers).
    v1 = Harness(client, FakeActivities(), queue)
    v2 = Harness(client, FakeActivities(), queue)
    try:
        async with v1.worker(deployment(name, "v1")):
            address = client.service_client.config.target_host
            assert await engram_deployment_set_current(address, name, "v1") == 0
            assert f"{name}: current version v1 (was unversioned)" in capfd.readouterr().out
            agent = await v1.create_agent()
            await agent.ask("My name is Ada.", "m1")
            idle = await v1.create_agent()
            await idle.ask("Hello.", "i1")
            assert await version_of(agent) == (agent.first_run_id, "v1", PINNED)
            assert await version_of(idle) == (idle.first_run_id, "v1", PINNED)
            # `engram probe worker` and the tool-set check see versioned workers' polls too.
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                )
            )
            assert described.pollers

            async with v2.worker(deployment(name, "v2")):
                assert await set_current(client, name, "v2", SEEN_WITHIN) == "v1"
                # Pinned: the turn after the release still runs on v1, in the same run.
                await agent.ask("Where are you?", "m2")
                assert len(v1.fake.requests) == 3 and not v2.fake.requests
                # Then, idle between turns, it continues as new onto the current version.
                await eventually(lambda: _on(agent, "v2"), "the agent to move to v2")
                third = await agent.ask("What is my name?", "m3")

                assert third.events[-1].text == "You said: What is my name?"
                (asked,) = v2.fake.requests
                assert ("user", "My name is Ada.") in prompt(asked)
                assert ("assistant", "You said: Where are you?") in prompt(asked)
                assert [t.message_id for t in (await agent.history()).turns] == ["m1", "m2", "m3"]
                runs = await agent.runs()
                assert len(runs) == 2 and not runs[1].next_run_id

                # An idle agent, with no turn to take, moves at `engram agents upgrade`.
                assert await version_of(idle) == (idle.first_run_id, "v1", PINNED)
                await within(idle.handle.signal(AgentWorkflow.upgrade))
                await eventually(lambda: _on(idle, "v2"), "the idle agent to move to v2")
                # A new agent starts on the current version. Not eagerly: in process, the SDK
                # hands an eager start's first task to any worker of the queue, whatever its
                # version (a gateway runs apart from the workers, so it never starts eagerly).
                other = await v2.create_agent(eager=False)
                await other.ask("Hello.", "n1")
                assert (await version_of(other))[1:] == ("v2", PINNED)
                assert len(v1.fake.requests) == 3
                # What the README has the operator ask before stopping v1's workers.
                await eventually(
                    lambda: _running_on(client, name, {"v1": 0, "v2": 3}),
                    "visibility to list every agent on v2",
                )
    finally:
        await v1.close()
        await v2.close()
    assert time.monotonic() - started < 60


async def test_an_agent_an_operator_pinned_stays_on_its_version(
    workflow_env: WorkflowEnvironment,
) -> None:
    """A pinned override (`temporal workflow update-options --versioning-override-behavior
    pinned`) would outlive continue-as-new, the new run landing on the old version again: Temporal
    does not tell such an agent its target changed, so it stays in its run instead of continuing
    as new at every idle point."""
    client = workflow_env.client
    name = f"engram-{uuid.uuid4().hex[:12]}"
    queue = f"engram-test-{uuid.uuid4()}"
    v1 = Harness(client, FakeActivities(), queue)
    v2 = Harness(client, FakeActivities(), queue)
    try:
        async with v1.worker(deployment(name, "v1")), v2.worker(deployment(name, "v2")):
            await set_current(client, name, "v1", SEEN_WITHIN)
            # Not eagerly: either version's worker in this process could take the first task.
            agent = await v1.create_agent(eager=False)
            await agent.ask("hello", "m1")
            await client.workflow_service.update_workflow_execution_options(
                UpdateWorkflowExecutionOptionsRequest(
                    namespace=client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=agent.workflow_id),
                    workflow_execution_options=WorkflowExecutionOptions(
                        versioning_override=PinnedVersioningOverride(
                            WorkerDeploymentVersion(name, "v1")
                        )._to_proto()
                    ),
                    update_mask=FieldMask(paths=["versioning_override"]),
                )
            )
            await set_current(client, name, "v2", SEEN_WITHIN)
            await agent.ask("still there?", "m2")
            await agent.ask("and now?", "m3")
            await asyncio.sleep(1.0)  # time for a wrongly eager agent to continue as new

            assert await version_of(agent) == (agent.first_run_id, "v1", PINNED)
            assert len(v1.fake.requests) == 3 and not v2.fake.requests
    finally:
        await v1.close()
        await v2.close()


async def _running_on(client: Client, name: str, counts: dict[str, int]) -> bool:
    """Visibility counts this many running workflows on each of the deployment's versions."""
    for build_id, count in counts.items():
        query = (
            f"TemporalWorkerDeploymentVersion = '{name}:{build_id}' AND ExecutionStatus = 'Running'"
        )
        if (await client.count_workflows(query)).count != count:
            return False
    return True


async def _on(agent: Agent, build_id: str) -> bool:
    """The agent runs a later run than its first, pinned to `build_id`."""
    run, build, behavior = await version_of(agent)
    return run != agent.first_run_id and (build, behavior) == (build_id, PINNED)


def test_a_worker_is_versioned_with_both_flags_or_neither() -> None:
    assert deployment("", "") is None
    config = deployment("engram", "0.8.0")
    assert config is not None and config.use_worker_versioning
    assert config.version.to_canonical_string() == "engram.0.8.0"
    for name, build_id in (("engram", ""), ("", "0.8.0"), ("en.gram", "0.8.0")):
        with pytest.raises(ValueError):
            deployment(name, build_id)


async def test_a_version_no_worker_polled_is_not_made_current(
    workflow_env: WorkflowEnvironment, capfd: pytest.CaptureFixture[str]
) -> None:
    address = workflow_env.client.service_client.config.target_host
    name = f"engram-{uuid.uuid4().hex[:12]}"
    assert await engram_deployment_set_current(address, name, "v1", wait=1.0) == 1
    assert f"{name} v1 not made current: " in capfd.readouterr().out


def test_engram_worker_with_a_deployment_runs_pinned_agents(
    tmp_path: Path, llm: FakeLLM, capfd: pytest.CaptureFixture[str]
) -> None:
    """The flags, end to end: `engram worker --deployment-name --build-id` processes, a gateway
    that starts agents as in production (no worker beside it), and `engram deployment
    set-current` from the command line."""
    cluster = Cluster(tmp_path, llm.url)
    name = f"engram-{uuid.uuid4().hex[:12]}"
    try:
        cluster.start_temporal()
        cluster.start_worker("--deployment-name", name, "--build-id", "0.8.0")
        _, address = cluster.start_gateway()
        argv = ["deployment", "set-current", name, "0.8.0"]
        with pytest.raises(SystemExit) as exited:
            main([*argv, "--temporal-address", cluster.temporal_address, "--no-tls"])
        assert exited.value.code == 0, capfd.readouterr().out
        stub = cluster.stub(address)
        agent_id = create_agent(stub)
        reader = Reader(stub.Chat(iter([user_message(agent_id, "Hello.")]), timeout=60))
        assert reader.done.wait(45) and reader.error is None, reader.error
        assert finals(reader.messages)

        async def described() -> tuple[str, str, int]:
            client = await Client.connect(cluster.temporal_address)
            handle = client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
            info = (await handle.describe()).raw_description.workflow_execution_info
            version = info.versioning_info.deployment_version
            return version.deployment_name, version.build_id, info.versioning_info.behavior

        assert asyncio.run(described()) == (name, "0.8.0", PINNED)
    finally:
        cluster.stop()

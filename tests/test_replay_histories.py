"""Every recorded history (agents', scheduled wake-ups') still replays against today's workflow
code.

A failure here means a workflow change would break running agents: guard the change with
workflow.patched() (see the README's "Changing workflow code") instead of editing history.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from engram.codec.payload_codec import PLAIN
from engram.worker import workflow_runner
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.wake_up import WakeUpWorkflow

HISTORIES = {
    p.stem: p.read_text() for p in sorted((Path(__file__).parent / "histories").glob("*.json"))
}


def test_there_are_recorded_histories() -> None:
    assert HISTORIES


@pytest.mark.parametrize("name", HISTORIES)
async def test_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    # With the data converter every client and worker uses: old inputs and results decode the same.
    result = await Replayer(
        workflows=[AgentWorkflow, WakeUpWorkflow],
        workflow_runner=workflow_runner(strict=True),
        data_converter=PLAIN,
    ).replay_workflow(history)
    assert result.replay_failure is None

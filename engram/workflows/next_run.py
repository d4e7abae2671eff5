"""When an agent's run continues as new between turns, and where its next run lands."""

from __future__ import annotations

from temporalio import workflow

from engram.workflows.types import AgentState, RunState


def history_is_long(state: AgentState) -> bool:
    info = workflow.info()
    return (
        info.is_continue_as_new_suggested()
        or info.get_current_history_length() > state.max_history_events
    )


def upgrade_due(asked: bool, turn_active: bool, run: RunState | None) -> bool:
    """An upgrade was asked for (the signal, `asked`, or a new current version of a versioned
    worker's deployment) and the agent is between turns, with no run going on or waiting for its
    user. Old histories never had the signal, nor unversioned ones a target version, so this
    stays False on them."""
    asked = asked or workflow.info().is_target_worker_deployment_version_changed()
    return asked and not turn_active and run is None


def versioning() -> workflow.ContinueAsNewVersioningBehavior | None:
    """Where the run continuing as new between turns lands. A versioned agent is PINNED to its
    worker's version (engram/worker.py), and its new run would inherit that: it starts on the
    deployment's current version instead, the one place an agent changes version. An unversioned
    worker's command stays as it always was."""
    if workflow.info().get_current_deployment_version() is None:
        return None
    return workflow.ContinueAsNewVersioningBehavior.AUTO_UPGRADE

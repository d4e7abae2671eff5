"""Every patch the agent's workflow code takes, what it changed, and where it is in its life.

A running agent replays its history on the worker's current code, so a change to the commands
the workflow issues goes in behind a patch, in three stages (as Temporal's `patching` sample shows
them):

1. ADDED: `workflow.patched(id)` picks the path. A run that started before the change replays the
   old path (its history has no marker); every other run takes the new one and records a marker.
2. DEPRECATED: once no running agent is in a run that started before the release that ADDED it,
   the old path is deleted and the call becomes `workflow.deprecate_patch(id)`: runs with the marker
   and runs without it both replay the new path only.
3. REMOVED: once no running agent is in a run that started before the release that DEPRECATED it,
   the call goes too. The entry stays here, as a record, so the id is never used again.

An agent only leaves a run by continuing as new, which an idle one otherwise does only when its
history grows long: `engram agents upgrade` makes every agent continue as new between turns, on the
workers' current code. So "every agent continued as new on release R or later" is what a stage
waits for. Change a stage here (and delete the old path at the call site in the same commit);
`check(patch)` does the rest. tests/test_patches.py checks this list against the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from temporalio import workflow


class Stage(StrEnum):
    ADDED = "added"
    DEPRECATED = "deprecated"
    REMOVED = "removed"


# The first release whose agents take the `upgrade` signal: before it an idle agent could stay in
# one run for ever, so no patch could be retired.
UPGRADE_SINCE = "0.7.0"


@dataclass(frozen=True)
class Patch:
    id: str
    changed: str
    added_in: str
    stage: Stage = Stage.ADDED
    deprecated_in: str = ""
    removed_in: str = ""

    def next_step(self) -> str:
        """What the next stage waits for."""
        if self.stage == Stage.ADDED:
            since = max(self.added_in, UPGRADE_SINCE, key=_release)
            return (
                f"deprecate once every agent has continued as new on {since} or later "
                "(after `engram agents upgrade`)"
            )
        if self.stage == Stage.DEPRECATED:
            return (
                f"remove once every agent has continued as new on {self.deprecated_in} or later "
                "(after `engram agents upgrade`)"
            )
        return f"removed in {self.removed_in}: never reuse the id"


def check(patch: Patch) -> bool:
    """Whether to take the new path: `workflow.patched` while the patch is ADDED;
    `workflow.deprecate_patch` and always True once it is DEPRECATED."""
    if patch.stage == Stage.ADDED:
        return workflow.patched(patch.id)
    if patch.stage == Stage.DEPRECATED:
        workflow.deprecate_patch(patch.id)
        return True
    raise ValueError(f"patch {patch.id!r} was removed: its call site must go")


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


MODEL_TOKENIZER = Patch(
    "model-tokenizer",
    "OpenAI models' tokens are counted with tiktoken's cl100k_base instead of the 4-characters "
    "estimate: compaction (the summarize and archive_turns activities) starts at another turn.",
    added_in="0.4.0",
)
ANNOUNCE_AFTER_COMMIT = Patch(
    "announce-after-commit",
    "A turn's events are announced by a regular activity, once the workflow task that reached "
    "them is recorded, instead of a local activity.",
    added_in="0.5.0",
)
DOUBLE_TEXTING = Patch(
    "double-texting",
    "Messages sent while the agent works follow its double-texting policy: taken into the turn "
    "at its next step (steer) or cutting off its LLM call (interrupt), instead of queued.",
    added_in="0.6.0",
)
HAND_OVER_WAITERS = Patch(
    "hand-over-waiters",
    "A run followed by a client continues as new between two steps: its waiters are answered "
    "'continued' first, instead of keeping the run from continuing as new.",
    added_in="0.6.0",
)
TOOL_CANCEL_ENDS_TURN = Patch(
    "tool-cancel-ends-turn",
    "A cancel while a worker tool runs ends the turn, instead of failing the workflow.",
    added_in="0.6.0",
)
CANCEL_BEFORE_TOOL_STARTS = Patch(
    "cancel-before-tool-starts",
    "A cancel that comes while a tool call is being announced stops the call before its tool "
    "starts, instead of running the tool to its end.",
    added_in="0.6.0",
)

JSON_BUDGET = Patch(
    "model-json-budget",
    "The model's arguments to remember, finish, wait and ask_user are refused past 32 levels of "
    "nesting or 64 KiB (workflows/model_json.py), instead of taken whatever their size.",
    added_in="0.7.0",
)
FEW_WAITERS = Patch(
    "few-waiters",
    "At most four callers wait on turns (chat, wait_for_turn); another is answered 'later' at "
    "once and polls the turn_state query, instead of holding one of Temporal's updates in "
    "flight for as long as the turn lasts.",
    added_in="0.7.0",
)
REPLY_CHECKPOINTS = Patch(
    "reply-checkpoints",
    "An LLM call's heartbeat names where its reply so far is in the blob store instead of "
    "carrying it; a call that fails for good has its reply read back by the load_reply activity.",
    added_in="0.7.0",
)
PROMPT_BY_REFERENCE = Patch(
    "prompt-by-reference",
    "An LLM request names the prompt's long texts already in the blob store by hash "
    "(workflows/prompt_refs.py); a request the store cannot answer is sent again inline.",
    added_in="0.7.0",
)
WAIT_IN_WORKFLOW = Patch(
    "wait-in-workflow",
    "A call to another agent submits the task with the short `delegate_task` activity and waits "
    "in workflow code for the other agent's `agent_answered` signal (checking on it with "
    "`check_delegation` every few minutes), instead of inside a tool activity that held a "
    "worker's slot for as long as the other agent took.",
    added_in="0.7.0",
)
WAKE_UP_WAITS_IN_WORKFLOW = Patch(
    "wake-up-waits-in-workflow",
    "A scheduled wake-up asks the agent to signal it when its run ends (the short "
    "`wake_up_follow_run` activity, the agent's `follow_run` update) and waits in workflow code "
    "for `run_ended`, checking on the run with `wake_up_check_run` now and then, instead of "
    "inside the `wake_up_watch_run` activity that held a worker's slot for as long as the run "
    "lasted. (The agent's side needs no marker: only the new update starts it.)",
    added_in="0.7.0",
)
MANDATORY_APPROVALS = Patch(
    "mandatory-approvals",
    "A tool whose confirmation its author or operator requires asks a person even when the "
    "agent's policy says 'always' (set at creation, by an edit, by stop_asking or by "
    "auto_approve_read_only), and stop_asking no longer changes its policy.",
    added_in="0.7.0",
)
QUIET_THINKING = Patch(
    "quiet-thinking",
    "A chat turn records no `EngramStatus` upsert: the search attribute holds only lasting "
    "states (idle, paused, working, sleeping, waiting), not the turn's passing `thinking`, which "
    "the describe query still reports. Two events fewer per chat turn.",
    added_in="0.7.0",
)
ANNOUNCE_WITH_TOOL = Patch(
    "announce-with-tool",
    "A worker or MCP tool's activity carries the turn's unsent events and relays them before the "
    "tool runs, instead of an `announce` activity before it: six events fewer per tool call.",
    added_in="0.7.0",
)
RECALL = Patch(
    "recall",
    "The model is offered the `recall` tool (unless AgentConfig.disable_recall): a call archives "
    "the events earlier turns left in state and runs the read-only `recall` search activity.",
    added_in="0.7.0",
)
FORK_SUMMARIES = Patch(
    "fork-summaries",
    "A compaction archives the last turn it folds with the summary it made "
    "(`Turn.summary_after`), so a fork or rewind to an older point can start from the summary "
    "of the turns before it (workflows/fork.py).",
    added_in="0.7.0",
)
FAILOVER = Patch(
    "failover",
    "An LLM request carries the agent's fallback_models (the activity fails over along them) "
    "and may come back out of quota: the turn then waits on a durable timer (status "
    "waiting_for_quota) and calls the model again, instead of the activity retrying it.",
    added_in="0.7.0",
)
COST_BUDGET = Patch(
    "cost-budget",
    "An agent with AgentConfig.max_cost_usd sends each LLM call the budget it has left; a call the "
    "worker refuses as over budget leaves the turn waiting (status budget_exhausted, a notice) "
    "until an Edit raises the budget, then the call is made again.",
    added_in="0.7.0",
)
TENANT_BUDGET = Patch(
    "tenant-budget",
    "A call the worker refuses because it could cross its tenant's daily budget "
    "(TENANT_BUDGET_EXHAUSTED) leaves the turn waiting (status budget_exhausted, a notice) on a "
    "timer until the next UTC day, cut short by a resume or an Edit; then the call is made again.",
    added_in="0.7.0",
)
CODE_MODE = Patch(
    "code-mode",
    "A `run_script` call (engram.tools.scripts) is run as a loop: its activity, then each tool "
    "call its script makes as a tool step of its own (events, approval policy, activity), the "
    "script's activity again with the results so far, until the script ends.",
    added_in="0.7.0",
)
LOCAL_FAST_TOOLS = Patch(
    "local-fast-tools",
    "A call to a worker tool that is read-only and declares itself fast (`@tool(fast=True)`) runs "
    "as a local activity in the workflow's worker, with a regular activity as fallback, instead "
    "of always as a regular activity: a round trip through the server fewer per tool step.",
    added_in="0.7.0",
)

PATCHES = (
    MODEL_TOKENIZER,
    ANNOUNCE_AFTER_COMMIT,
    DOUBLE_TEXTING,
    HAND_OVER_WAITERS,
    TOOL_CANCEL_ENDS_TURN,
    CANCEL_BEFORE_TOOL_STARTS,
    JSON_BUDGET,
    FEW_WAITERS,
    REPLY_CHECKPOINTS,
    PROMPT_BY_REFERENCE,
    WAIT_IN_WORKFLOW,
    WAKE_UP_WAITS_IN_WORKFLOW,
    MANDATORY_APPROVALS,
    QUIET_THINKING,
    ANNOUNCE_WITH_TOOL,
    RECALL,
    FORK_SUMMARIES,
    FAILOVER,
    COST_BUDGET,
    TENANT_BUDGET,
    CODE_MODE,
    LOCAL_FAST_TOOLS,
)

# Constants whose values decide which commands the workflow issues (whether an activity is
# scheduled, how many LLM calls a turn makes, when compaction starts), with their values. A
# running agent replays on the new value: changing one needs a patch (the old value kept on the
# old path) and a recorded history, then the new value here. tests/test_patches.py compares.
COMMAND_SHAPING: dict[str, object] = {
    # Archiving: the archive_events activity runs once more events than this are held.
    "engram.workflows.maintenance.EVENTS_IN_STATE": 500,
    # Token estimates and budgets: when compaction (summarize, archive_turns) runs.
    "engram.workflows.tokens.CHARS_PER_TOKEN": 4,
    "engram.workflows.tokens.OPENAI_MODELS.pattern": (
        r"^(ft:)?(gpt-|chatgpt-|o\d|text-embedding-|davinci|babbage)"
    ),
    "engram.workflows.prompt.TOKENS_PER_MESSAGE": 4,
    "engram.workflows.prompt.IMAGE_TOKENS": 800,
    "engram.workflows.prompt.DEFAULT_CONTEXT_TOKENS": 8192,
    # LLM calls per chat turn: the last one offers no tools.
    "engram.workflows.turn.MAX_TOOL_ROUNDS": 3,
    "engram.workflows.turn.MAX_TOOL_ROUNDS_WITH_TOOLS": 10,
    # A run's steps before it reports instead of stepping.
    "engram.workflows.autonomy.DEFAULT_MAX_STEPS": 50,
    # Model JSON past these budgets is refused (behind JSON_BUDGET).
    "engram.workflows.model_json.MAX_DEPTH": 32,
    "engram.workflows.model_json.MAX_BYTES": 64 * 1024,
    # Callers waiting on turns before another is answered 'later' (behind FEW_WAITERS).
    "engram.workflows.waiters.MAX_WAITING": 4,
    # How often a call waiting on another agent checks on it, signal or not (WAIT_IN_WORKFLOW).
    "engram.workflows.agent_waits.CHECK_EVERY_SECONDS": 300,
    # When a wake-up checks on its run, signal or not (WAKE_UP_WAITS_IN_WORKFLOW).
    "engram.workflows.wake_up.CHECK_FIRST_SECONDS": 1,
    "engram.workflows.wake_up.CHECK_MAX_SECONDS": 3600,
}

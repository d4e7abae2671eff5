"""Recall: the model searches its own whole transcript, beyond what its prompt holds.

Every agent gets the `recall` tool (unless its AgentConfig sets `disable_recall`): a full-text
search over every run, compaction and archive of its stream (user messages, replies, tool calls
and results), through the `recall` activity, read-only, against the transcript store. The store
only holds archived events, so events of earlier turns still in workflow state are archived
first; the turn in progress is not searched (it is in the model's prompt).
Everything here is workflow code: deterministic.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow

from engram.activities.archive import ArchiveActivities, ArchiveInput
from engram.activities.recall import RecallActivities, RecallInput
from engram.transcripts.search import EXCERPT_CHARS, MAX_HITS, SearchPage
from engram.workflows import patches
from engram.workflows.events import EventLog
from engram.workflows.function_tool import function_tool
from engram.workflows.maintenance import ARCHIVE_RETRY
from engram.workflows.model_json import NotAnObject, UnusableJSON, parse_model_arguments
from engram.workflows.types import AgentState, ToolCall

RECALL = "recall"

RECALL_TOOL: dict[str, Any] = function_tool(
    RECALL,
    "Search everything said and done in this conversation since it began, including what "
    "is no longer in front of you (older turns are only summarized): user messages, your "
    "replies, tool calls and their results. Every word of the query must occur. "
    f"Returns at most {MAX_HITS} excerpts of {EXCERPT_CHARS} characters, best first, each "
    "with its sequence id and time; ask for the next page to see more.",
    {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "words to look for, e.g. a name"},
            "since": {"type": "string", "description": "optional ISO 8601 time: not before"},
            "until": {"type": "string", "description": "optional ISO 8601 time: before"},
            "from_sequence": {
                "type": "integer",
                "description": "optional: only messages with a sequence id above this",
            },
            "page": {"type": "integer", "description": "0 (the default) for the best hits"},
        },
        "required": ["query"],
    },
)


class RecallError(ValueError):
    """Arguments the model must be told are unusable, and why."""


def offered(state: AgentState) -> bool:
    """Whether the agent has the tool. Agents whose histories were made without it keep it so."""
    return not state.spec.settings.disable_recall and patches.check(patches.RECALL)


async def recall(state: AgentState, log: EventLog, call: ToolCall, turn_first_seq: int) -> str:
    """Carry out the model's call: archive what earlier turns left in state, then search."""
    request = recall_input(state.spec.agent_id, call.arguments)
    earlier = [e for e in state.events if e.seq < turn_first_seq]
    if earlier:
        through = await workflow.execute_activity_method(
            ArchiveActivities.archive_events,
            ArchiveInput(state.spec.agent_id, earlier),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=ARCHIVE_RETRY,
        )
        log.drop_through(through)
    page = await workflow.execute_activity_method(
        RecallActivities.recall,
        request,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=ARCHIVE_RETRY,
    )
    return shown(request, page)


def recall_input(agent_id: str, arguments: str) -> RecallInput:
    """The call's arguments as the activity's input; RecallError if they are unusable."""
    try:
        parsed = parse_model_arguments(arguments)
    except NotAnObject:
        raise RecallError("arguments must be a JSON object with a query") from None
    except UnusableJSON as err:
        raise RecallError(f"arguments are {err}") from None
    query = str(parsed.get("query") or "").strip()
    if not query:
        raise RecallError("query is required")
    try:
        return RecallInput(
            agent_id=agent_id,
            query=query,
            from_sequence=max(0, int(parsed.get("from_sequence") or 0)),
            since=_time(parsed.get("since")),
            until=_time(parsed.get("until")),
            page=max(0, int(parsed.get("page") or 0)),
        )
    except (TypeError, ValueError) as err:
        raise RecallError(str(err)) from None


def shown(request: RecallInput, page: SearchPage) -> str:
    """What the model is shown of a page of hits."""
    if not page.hits:
        return f"nothing found for {request.query!r}"
    lines = [f"{len(page.hits)} matches for {request.query!r}, best first:"]
    for hit in page.hits:
        when = datetime.fromtimestamp(hit.ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        what = f"{hit.kind} {hit.code}".strip()
        lines.append(f"[seq {hit.seq}, {when}, {what}] {hit.excerpt}")
    if page.more:
        lines.append(f"more: call {RECALL} again with page={request.page + 1}")
    return "\n".join(lines)


def _time(value: object) -> float:
    if not value:
        return 0.0
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()

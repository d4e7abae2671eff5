"""Autonomous runs: an agent working toward its goal, step by step, without a user message.

A run is a turn that goes on for many steps, each one LLM call and the tool calls it asks for.
The workflow takes one step per loop, so it may continue-as-new between two steps; what a run
needs to go on (its steps so far, its budget) lives in `RunState`, in the agent's state. The
model gets three more tools while it works: `finish` (the answer; ends the run), `wait` (sleep on a
durable timer: no CPU, no worker memory, however long) and `ask_user` (stop until the user
answers). Bounds (steps, wall-clock time including sleep, tokens) end a run with a report.
Everything here is workflow code: deterministic, with time from `workflow.now()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow

from engram.vocabulary import Notice
from engram.workflows.events import EventLog
from engram.workflows.function_tool import function_tool
from engram.workflows.model_json import NotAnObject, UnusableJSON, parse_model_arguments
from engram.workflows.tokens import CHARS_PER_TOKEN
from engram.workflows.types import AgentSpec, AgentState, RunState, ToolCall, ToolRound, Turn

FINISH = "finish"
WAIT = "wait"
ASK_USER = "ask_user"
NAMES = (FINISH, WAIT, ASK_USER)
DEFAULT_MAX_STEPS = 50
# The longest single wait; a longer one is cut to it (a run's max_duration cuts it further).
MAX_WAIT = timedelta(days=30)
# What the prompt keeps of earlier steps verbatim (a quarter of the context budget); older ones are
# summed up a line each, the newest EARLIER_SHOWN of them shown, EARLIER_KEPT kept in the state.
EARLIER_STEP_CHARS = 160
EARLIER_SHOWN = 40
EARLIER_KEPT = 200

TOOLS: list[dict[str, Any]] = [
    function_tool(
        FINISH,
        "You are done: give your final answer. This ends your run.",
        {
            "type": "object",
            "properties": {
                "answer": {"type": "string", "description": "the result, for the user"},
                "structured": {
                    "type": "object",
                    "description": "optional machine-readable result",
                },
            },
            "required": ["answer"],
        },
    ),
    function_tool(
        WAIT,
        "Sleep until something should have happened, then carry on. Give `seconds` to "
        "wait, or `until` (an RFC 3339 time); `reason` says what you wait for.",
        {
            "type": "object",
            "properties": {
                "seconds": {"type": "number", "minimum": 0},
                "until": {"type": "string", "description": "e.g. 2026-12-01T09:00:00Z"},
                "reason": {"type": "string"},
            },
        },
    ),
    function_tool(
        ASK_USER,
        "Ask the user a question and stop until they answer.",
        {
            "type": "object",
            "properties": {"question": {"type": "string"}},
            "required": ["question"],
        },
    ),
]

REPORT_INSTRUCTIONS = (
    "You have reached the limit of this run ({limit}). Stop working. In a few sentences, report "
    "where you got to, what is done and what is left."
)


@dataclass
class Finished:
    """The run is over for now: `finish` was called (an answer) or `ask_user` (a question)."""

    answer: str
    structured: dict[str, Any] | None = None
    asks_user: bool = False


class ArgumentError(ValueError):
    pass


def start(turn: Turn, spec: AgentSpec, now: float) -> RunState:
    """The state of a run that starts with `turn` (its user text: the run's instructions)."""
    return RunState(
        run_id=turn.message_id,
        instructions=turn.user,
        started_at=now,
        max_seconds=spec.settings.max_duration_seconds,
    )


def answered(run: RunState, answer: str) -> None:
    """The user answered the question the run asked with `ask_user`: that call's result."""
    run.waiting_for_user = False
    for round_ in reversed(run.rounds):
        for i, call in enumerate(round_.calls):
            if call.name == ASK_USER:
                round_.results[i] = f"The user answered: {answer}"
                return
    run.earlier.append(f"the user said: {answer}"[:EARLIER_STEP_CHARS])


def arguments(call: ToolCall) -> dict[str, Any]:
    try:
        return parse_model_arguments(call.arguments)
    except NotAnObject:
        raise ArgumentError("arguments must be a JSON object") from None
    except UnusableJSON as err:
        raise ArgumentError(f"arguments are {err}") from None


def finished(call: ToolCall) -> Finished:
    """What `finish` or `ask_user` ends the run with; ArgumentError if the call is unusable."""
    args = arguments(call)
    if call.name == FINISH:
        answer = args.get("answer")
        structured = args.get("structured")
        if not isinstance(answer, str):
            raise ArgumentError("finish needs `answer`, a string")
        if structured is not None and not isinstance(structured, dict):
            raise ArgumentError("`structured` must be a JSON object")
        return Finished(answer, structured)
    question = args.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ArgumentError("ask_user needs `question`, a string")
    return Finished(question, asks_user=True)


def wake_time(call: ToolCall, now: datetime, deadline: datetime | None) -> datetime:
    """When a `wait` call should wake the agent."""
    args = arguments(call)
    if "until" in args:
        try:
            until = datetime.fromisoformat(str(args["until"]))
        except ValueError:
            raise ArgumentError("`until` must be an RFC 3339 time") from None
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
    elif isinstance(args.get("seconds"), (int, float)) and args["seconds"] >= 0:
        until = now + timedelta(seconds=float(args["seconds"]))
    else:
        raise ArgumentError("wait needs `seconds` (a number >= 0) or `until`")
    until = min(max(until, now), now + MAX_WAIT)
    return min(until, deadline) if deadline is not None else until


def limit_reached(run: RunState, state: AgentState, now: float) -> str:
    """Which bound the run has reached, in words; "" while it may take another step."""
    settings = state.spec.settings
    max_steps = settings.max_steps or DEFAULT_MAX_STEPS
    if run.steps >= max_steps:
        return f"{max_steps} steps"
    if run.max_seconds and now - run.started_at >= run.max_seconds:
        return f"{run.max_seconds:g} s of working time"
    budget = settings.max_run_tokens
    if budget and run.tokens >= budget:
        return f"a budget of {budget} tokens"
    return ""


def deadline(run: RunState) -> datetime | None:
    if not run.max_seconds:
        return None
    return datetime.fromtimestamp(run.started_at + run.max_seconds, tz=UTC)


def recent_rounds(run: RunState, budget_tokens: int) -> list[ToolRound]:
    """The newest rounds that fit the prompt's share for them; older ones move, a line each, to
    `run.earlier`, so a run of a thousand steps costs what a run of ten does."""
    room = budget_tokens * CHARS_PER_TOKEN // 4
    kept, size = 0, 0
    for round_ in reversed(run.rounds):
        size += len(round_.text) + sum(len(c.arguments) for c in round_.calls)
        size += sum(len(r) for r in round_.results) + sum(len(t) for t in round_.then)
        if size > room and kept:
            break
        kept += 1
    _fold(run, run.rounds[: len(run.rounds) - kept])
    run.rounds = run.rounds[len(run.rounds) - kept :]
    return run.rounds


def fold_all(run: RunState) -> None:
    """Every round, a line each: for the report, which is asked with no tool rounds."""
    _fold(run, run.rounds)
    run.rounds = []


def _fold(run: RunState, rounds: list[ToolRound]) -> None:
    for round_ in rounds:
        for call, result in zip(round_.calls, round_.results, strict=True):
            line = f"{call.name}({call.arguments}) -> {result}".replace("\n", " ")
            run.earlier.append(line[:EARLIER_STEP_CHARS])
        for text in round_.then:
            run.earlier.append(f"the user said: {text}"[:EARLIER_STEP_CHARS])
    # The state stays small however long the run: the oldest lines go (the notes and the
    # conversation's summary are where lasting facts belong).
    run.earlier = run.earlier[-EARLIER_KEPT:]


def instructions(run: RunState) -> str:
    """The run's user message: what to work on, and the steps taken too long ago to show."""
    text = (
        f"Work on your goal now, step by step, using your tools. {run.instructions}".strip()
        + "\nWhen you are done, call finish. To wait for something, call wait; to ask me, "
        "call ask_user."
    )
    if run.earlier:
        lines = "\n".join(f"- {line}" for line in run.earlier[-EARLIER_SHOWN:])
        text += f"\n\nYour latest earlier steps (in brief):\n{lines}"
    return text


async def sleep(
    call: ToolCall,
    run: RunState,
    log: EventLog,
    message_id: str,
    stopping: Callable[[], bool],
    status_changed: Callable[[], None],
) -> str:
    """Carry out `wait`: a durable timer, with a notice when the agent falls asleep and wakes."""
    now = workflow.now()
    until = wake_time(call, now, deadline(run))
    reason = str(arguments(call).get("reason") or "").strip()
    stamp = until.astimezone(UTC).isoformat().replace("+00:00", "Z")
    run.sleeping_until = until.timestamp()
    status_changed()
    log.notice(
        Notice.SLEEPING,
        f"sleeping until {stamp}" + (f": {reason}" if reason else ""),
        now=now.timestamp(),
        message_id=message_id,
    )
    try:
        await workflow.wait_condition(stopping, timeout=until - now)
    except TimeoutError:
        pass
    finally:
        run.sleeping_until = 0.0
        status_changed()
    woke = workflow.now()
    log.notice(Notice.AWAKE, "awake", now=woke.timestamp(), message_id=message_id)
    return f"woke up at {woke.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"

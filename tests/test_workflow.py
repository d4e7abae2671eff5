"""The agent workflow's logic, in process: a real Temporal dev server, scripted activities.

Each test drives one agent through the workflow's real updates, queries and signals (what the
gateway calls) and checks what it records, what it answers and what the LLM was sent. The LLM and
the transcript store are the scripted `FakeActivities` of tests/workflow_harness.py; everything
else, Temporal included, is real. Seconds, where the end-to-end tests take minutes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import grpc
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Replayer

from engram.gateway.errors import from_temporal
from engram.vocabulary import (
    AgentStatus,
    Command,
    ErrorCode,
    ErrorType,
    EventKind,
    Notice,
    Query,
    Signal,
    ToolKind,
    TurnOutcome,
    Update,
)
from engram.worker import workflow_runner
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import (
    AgentTool,
    EditInput,
    Event,
    EventsPage,
    LLMRequest,
    LLMResult,
    SummaryRequest,
    ToolCall,
    TurnResult,
)
from tests.workflow_harness import (
    Agent,
    Harness,
    echo,
    eventually,
    llm_failure,
    within,
)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def notices(events: list[Event]) -> list[str]:
    return [e.code for e in events if e.kind == EventKind.STATUS and e.code != Notice.THINKING]


def assert_whole_turn(result: TurnResult, reply: str) -> None:
    """A completed turn's record: its messages contiguous, from user message to final answer."""
    events = result.events
    assert [e.seq for e in events] == list(range(result.first_seq, result.last_seq + 1))
    assert all(e.message_id == result.message_id for e in events)
    assert kinds(events[:2]) == [EventKind.USER_MESSAGE, EventKind.STATUS]
    assert events[1].code == Notice.THINKING
    assert set(kinds(events[2:-1])) <= {EventKind.TEXT}
    assert "".join(e.text for e in events[2:-1]) == reply
    assert (events[-1].kind, events[-1].text) == (EventKind.FINAL_ANSWER, reply)


def prompt_users(request: LLMRequest) -> list[str]:
    return [m.content for m in request.messages if m.role == "user"]


def update_failure(raised: pytest.ExceptionInfo[WorkflowUpdateFailedError]) -> ApplicationError:
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


# --- the queue --------------------------------------------------------------------------------


async def test_messages_sent_during_a_turn_are_answered_in_order_one_at_a_time(
    harness: Harness,
) -> None:
    fake = harness.fake
    fake.gate = asyncio.Event()
    agent = await harness.create_agent()
    first = await agent.send("question 1", "m1")
    await fake.wait_for_requests(1)
    later = [await agent.send(f"question {i}", f"m{i}") for i in (2, 3, 4)]

    info = await agent.describe()
    assert (info.status, info.queued_messages, len(fake.requests)) == (AgentStatus.THINKING, 3, 1)
    # What ListAgents filters on is the lasting status: a chat turn passes and is not filed.
    assert await agent.search_status() == AgentStatus.IDLE
    page = await agent.events()
    assert page.in_flight is not None and page.in_flight.message_id == "m1"
    fake.gate.set()
    results = [await within(update.result()) for update in (first, *later)]

    next_seq = 1
    for i, result in enumerate(results, start=1):
        assert result.message_id == f"m{i}" and result.first_seq == next_seq
        assert_whole_turn(result, f"You said: question {i}")
        next_seq = result.last_seq + 1
    assert fake.most_running == 1
    # Asked in order, each prompt carrying every turn before it.
    assert [r.message_id for r in fake.requests] == ["m1", "m2", "m3", "m4"]
    assert prompt_users(fake.requests[3]) == [f"question {i}" for i in (1, 2, 3, 4)]
    assert [m.role for m in fake.requests[3].messages] == ["system"] + ["user", "assistant"] * 3 + [
        "user"
    ]
    info = await agent.describe()
    assert (info.status, info.completed_turns, info.queued_messages) == (AgentStatus.IDLE, 4, 0)
    assert info.last_seq == results[-1].last_seq
    assert await agent.search_status() == AgentStatus.IDLE


async def test_a_resent_message_is_the_same_turn_and_one_llm_call(harness: Harness) -> None:
    fake = harness.fake
    fake.gate = asyncio.Event()
    agent = await harness.create_agent()
    original = await agent.send("hello", "m1")
    await fake.wait_for_requests(1)
    queued = await agent.send("and then", "m2")
    # The same update id (Temporal's de-duplication) and a new one (a resend through another
    # gateway: the workflow's own), for the running message and for the queued one.
    resends = [
        await agent.send("hello", "m1"),
        await agent.send("hello", "m1", update_id="resend-m1"),
        await agent.send("and then", "m2", update_id="resend-m2"),
    ]
    assert (await agent.describe()).queued_messages == 1
    fake.gate.set()

    first, again, resent = [await within(u.result()) for u in (original, *resends[:2])]
    assert first == again == resent
    assert_whole_turn(first, "You said: hello")
    second = await within(queued.result())
    assert await within(resends[2].result()) == second
    # After the turn has ended, a resend is answered at once with the same record.
    assert await agent.ask("hello", "m1") == first
    late = await agent.send("hello", "m1", update_id="late-resend-m1")
    assert await within(late.result()) == first

    assert [r.message_id for r in fake.requests] == ["m1", "m2"]
    assert [t.message_id for t in (await agent.history()).turns] == ["m1", "m2"]
    assert (await agent.describe()).last_seq == second.last_seq


async def test_an_empty_message_is_refused_and_changes_nothing(harness: Harness) -> None:
    agent = await harness.create_agent()
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await agent.ask("  \n", "m1")
    assert "content is empty" in update_failure(raised).message
    assert (await agent.events()).events == [] and harness.fake.requests == []
    # The id was not taken: the same id with content is a new turn.
    assert_whole_turn(await agent.ask("now", "m1"), "You said: now")


# --- pause and resume -------------------------------------------------------------------------


async def test_a_paused_agent_queues_messages_and_answers_them_on_resume(harness: Harness) -> None:
    fake = harness.fake
    agent = await harness.create_agent()
    assert await agent.control(Command.PAUSE) == AgentStatus.PAUSED
    assert await agent.control(Command.PAUSE) == AgentStatus.PAUSED  # no second notice
    updates = [await agent.send(f"while paused {i}", f"m{i}") for i in (1, 2)]
    await asyncio.sleep(0.3)
    info = await agent.describe()
    assert (info.status, info.queued_messages, fake.requests) == (AgentStatus.PAUSED, 2, [])

    assert await agent.control(Command.RESUME) == AgentStatus.IDLE
    results = [await within(u.result()) for u in updates]
    for i, result in enumerate(results, start=1):
        assert_whole_turn(result, f"You said: while paused {i}")
    events = (await agent.events()).events
    assert [(e.seq, e.kind, e.code) for e in events[:2]] == [
        (1, EventKind.STATUS, Notice.PAUSED),
        (2, EventKind.STATUS, Notice.RESUMED),
    ]
    assert results[0].first_seq == 3 and results[1].first_seq == results[0].last_seq + 1
    assert [e.seq for e in events] == list(range(1, results[1].last_seq + 1))
    assert (await agent.describe()).status == AgentStatus.IDLE


async def test_a_pause_during_a_turn_is_noticed_after_it_and_holds_the_next(
    harness: Harness,
) -> None:
    fake = harness.fake
    fake.gate = asyncio.Event()
    agent = await harness.create_agent()
    first = await agent.send("long one", "m1")
    await fake.wait_for_requests(1)
    # The turn in progress carries on; its status says so until it ends.
    assert await agent.control(Command.PAUSE) == AgentStatus.THINKING
    second = await agent.send("next one", "m2")
    fake.gate.set()
    done = await within(first.result())
    assert_whole_turn(done, "You said: long one")

    # The notice waited for the turn, so the turn's messages stayed together.
    after = (await agent.events(done.last_seq)).events
    assert [(e.seq, e.code) for e in after] == [(done.last_seq + 1, Notice.PAUSED)]
    info = await agent.describe()
    assert (info.status, info.queued_messages, len(fake.requests)) == (AgentStatus.PAUSED, 1, 1)

    await agent.control(Command.RESUME)
    answered = await within(second.result())
    assert answered.first_seq == done.last_seq + 3  # after paused and resumed
    assert_whole_turn(answered, "You said: next one")


# --- failures and retry -----------------------------------------------------------------------


async def test_retry_runs_the_failed_turn_again_under_a_new_id(harness: Harness) -> None:
    fake = harness.fake
    failing = True

    def reply(request: LLMRequest) -> str | LLMResult:
        return llm_failure("LLM_HTTP_503", "the endpoint is down") if failing else echo(request)

    fake.reply = reply
    agent = await harness.create_agent()
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await agent.control(Command.RETRY)
    refusal = update_failure(raised)
    assert refusal.type == ErrorType.FAILED_PRECONDITION
    assert refusal.message == "no failed turn to retry"
    assert from_temporal(raised.value, agent.agent_id).code == grpc.StatusCode.FAILED_PRECONDITION

    failed = await agent.ask("please work", "m1")
    assert kinds(failed.events) == [EventKind.USER_MESSAGE, EventKind.STATUS, EventKind.ERROR]
    error = failed.events[-1]
    assert (error.code, error.text) == ("LLM_HTTP_503", "the endpoint is down")

    await agent.control(Command.RETRY)
    failed_again = await agent.wait_turn("m1#retry1")
    assert failed_again.first_seq == failed.last_seq + 1
    assert failed_again.events[0].text == "please work"
    assert failed_again.events[-1].code == "LLM_HTTP_503"

    failing = False
    await agent.control(Command.RETRY)
    # The newest failed turn is the retry itself, so this retry's id names it.
    retried = await agent.wait_turn("m1#retry1#retry1")
    assert_whole_turn(retried, "You said: please work")

    history = (await agent.history()).turns
    assert [(t.message_id, t.outcome) for t in history] == [
        ("m1", TurnOutcome.FAILED),
        ("m1#retry1", TurnOutcome.FAILED),
        ("m1#retry1#retry1", TurnOutcome.COMPLETED),
    ]
    # A failed turn leaves nothing in memory: the retry's prompt holds the question once.
    assert prompt_users(fake.requests[-1]) == ["please work"]
    assert (await agent.describe()).completed_turns == 1


async def test_two_retries_of_one_failed_turn_are_two_distinct_turns(harness: Harness) -> None:
    fake = harness.fake
    fake.reply = lambda request: llm_failure() if len(fake.requests) == 1 else echo(request)
    agent = await harness.create_agent()
    assert (await agent.ask("flaky", "m1")).events[-1].kind == EventKind.ERROR
    # Paused, so both retries wait in the queue (a client pressing retry twice).
    await agent.control(Command.PAUSE)
    await agent.control(Command.RETRY)
    await agent.control(Command.RETRY)
    await agent.control(Command.RESUME)
    await eventually(lambda: len(fake.requests) == 3, "both retries to run")
    await eventually(lambda: fake.running == 0, "the retries to end")

    turns = (await agent.history()).turns
    ids = [t.message_id for t in turns]
    # Message ids are what resends and wait_turn find a turn by: each must name one turn.
    assert len(ids) == 3 and len(set(ids)) == 3, ids
    for message_id in ids[1:]:
        assert_whole_turn(await agent.wait_turn(message_id), "You said: flaky")


# --- edit -------------------------------------------------------------------------------------


async def test_an_edit_is_applied_whole_or_not_at_all(harness: Harness) -> None:
    fake = harness.fake
    agent = await harness.create_agent(goal="Old goal", system_prompt="Be kind.")
    await agent.edit(EditInput(memory={"keep": "an existing note", "drop": "an old note"}))
    edits_before = notices((await agent.events()).events)

    for bad in (
        EditInput(goal="New goal", memory={"fine": "ok", "too_long": "x" * 2001}),
        EditInput(goal="New goal", temperature=0.5, memory={"   ": "no name"}),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as raised:
            await agent.edit(bad)
        assert "memory note" in update_failure(raised).message
    info = await agent.describe()
    assert (info.spec.goal, info.spec.settings.temperature) == ("Old goal", None)
    assert sorted((n.name, n.content) for n in info.notes) == [
        ("drop", "an old note"),
        ("keep", "an existing note"),
    ]
    assert notices((await agent.events()).events) == edits_before == [Notice.EDITED]

    status = await agent.edit(
        EditInput(
            goal="New goal",
            system_prompt="Be brief.",
            temperature=0.5,
            max_context_tokens=4000,
            memory={"drop": "", "color": "blue"},
            description="a new plan",
        )
    )
    assert status == AgentStatus.IDLE
    info = await agent.describe()
    assert (info.spec.goal, info.spec.system_prompt) == ("New goal", "Be brief.")
    assert (info.spec.settings.temperature, info.spec.settings.max_context_tokens) == (0.5, 4000)
    assert info.spec.config == {"temperature": 0.5, "maxContextTokens": 4000}
    assert sorted((n.name, n.content) for n in info.notes) == [
        ("color", "blue"),
        ("keep", "an existing note"),
    ]
    last = (await agent.events()).events[-1]
    assert (last.kind, last.code, last.text) == (EventKind.STATUS, Notice.EDITED, "a new plan")

    await agent.ask("what now?", "m1")
    request = fake.requests[-1]
    system = request.messages[0]
    assert system.role == "system" and request.temperature == 0.5
    assert "Be brief." in system.content and "Your goal: New goal" in system.content
    assert "- keep: an existing note" in system.content and "- color: blue" in system.content
    assert "Be kind." not in system.content and "an old note" not in system.content


# --- keeping the state small ------------------------------------------------------------------


async def test_compaction_summarizes_and_archives_older_turns(harness: Harness) -> None:
    fake = harness.fake
    # Every LLM call in order: a turn's message id, or "summarize" with the calls then running.
    calls: list[str] = []
    answer, summarize = fake.reply, fake.summary

    def reply(request: LLMRequest) -> str | LLMResult:
        calls.append(request.message_id)
        return answer(request)

    def summary(request: SummaryRequest) -> str:
        calls.append(f"summarize while {fake.running} running")
        return summarize(request)

    fake.reply, fake.summary = reply, summary
    agent = await harness.create_agent(max_context_tokens=200)
    facts = [f"fact {i}: the code word is word{i:02d}" for i in range(1, 9)]
    for i, fact in enumerate(facts, start=1):
        await agent.ask(fact, f"m{i}")

    assert fake.summaries, "the conversation passed three quarters of its budget"
    first = fake.summaries[0]
    folded = len(first.messages) // 2
    assert folded >= 1 and first.previous == ""
    assert [m.content for m in first.messages if m.role == "user"] == facts[:folded]
    # Made between turns, once a few turns had filled the budget.
    at = calls.index("summarize while 0 running")
    assert calls[:at] == [f"m{i}" for i in range(1, at + 1)] and at > folded

    await eventually(agent.is_quiet, "the last turn's compaction to end")
    archived = fake.archived_turns[agent.agent_id]
    history = await agent.history()
    assert history.archived_turns == len(archived) >= folded
    assert [archived[i].message_id for i in range(len(archived))] == [
        f"m{i}" for i in range(1, len(archived) + 1)
    ]
    assert [t.message_id for t in history.turns] == [
        f"m{i}" for i in range(len(archived) + 1, len(facts) + 1)
    ]
    assert (await agent.describe()).completed_turns == len(facts)

    # Every prompt after the first summary carries it instead of the turns it folded.
    summarized = [r for r in fake.requests if "[summary of:" in r.messages[0].content]
    assert summarized and summarized[-1] is fake.requests[-1]
    assert fake.requests.index(summarized[0]) == at
    newest = fake.requests[-1]
    assert facts[0] in newest.messages[0].content
    assert facts[0] not in prompt_users(newest)
    assert prompt_users(newest)[-1] == facts[-1]


async def test_stream_messages_of_finished_turns_move_to_the_store(harness: Harness) -> None:
    fake = harness.fake
    long_reply = " ".join(f"w{i}" for i in range(520))
    fake.reply = lambda request: long_reply if request.message_id == "m1" else echo(request)
    agent = await harness.create_agent()
    first = await agent.ask("say a lot", "m1")
    assert_whole_turn(first, long_reply)
    second = await agent.ask("and now?", "m2")
    assert second.first_seq == first.last_seq + 1

    # Archived between the two turns: the first turn's messages are in the store only.
    archived = fake.archived_events[agent.agent_id]
    assert sorted(archived) == list(range(1, first.last_seq + 1))
    assert [archived[e.seq] for e in first.events] == first.events
    page = await agent.events()
    assert page.archived_through == first.last_seq and second.archived_through == first.last_seq
    assert page.events == second.events
    assert [t.message_id for t in (await agent.history()).turns] == ["m1", "m2"]


async def test_continue_as_new_answers_every_message_once_in_order(harness: Harness) -> None:
    fake = harness.fake
    agent = await harness.create_agent(max_history_events=40)
    sequential = [f"a{i}" for i in range(6)]
    concurrent = [f"b{i}" for i in range(6)]
    pipelined = [f"c{i}" for i in range(6)]

    # Back to back: each message the moment the previous one is answered.
    results = [await agent.ask(f"say {m}", m) for m in sequential]
    # All at once.
    results += await within(asyncio.gather(*(agent.ask(f"say {m}", m) for m in concurrent)))
    # Submitted one after another without waiting for answers, then all awaited.
    updates = [await agent.send(f"say {m}", m) for m in pipelined]
    results += [await within(u.result()) for u in updates]

    everything = sequential + concurrent + pipelined
    for message_id, result in zip(everything, results, strict=True):
        assert result.message_id == message_id
        assert_whole_turn(result, f"You said: say {message_id}")
    assert Counter(r.message_id for r in fake.requests) == Counter(everything)

    turns = (await agent.history()).turns
    assert [t.message_id for t in turns] == [r.message_id for r in fake.requests]
    order = [t.message_id for t in turns]
    assert order[:6] == sequential and order[-6:] == pipelined
    assert sorted(order[6:12]) == concurrent
    assert all(t.outcome == TurnOutcome.COMPLETED for t in turns)
    by_seq = sorted(results, key=lambda r: r.first_seq)
    assert [r.message_id for r in by_seq] == order
    assert by_seq[0].first_seq == 1
    for before, after in itertools.pairwise(by_seq):
        assert after.first_seq == before.last_seq + 1
    events = (await agent.events()).events
    assert [e.seq for e in events] == list(range(1, by_seq[-1].last_seq + 1))
    info = await agent.describe()
    assert (info.completed_turns, info.last_seq) == (len(everything), by_seq[-1].last_seq)

    runs = await agent.runs()
    assert len(runs) >= 3, [r.events for r in runs]
    chat_updates: list[str] = []
    for run in runs:
        # Every update a run accepted, it completed: none was left to a run that ended.
        assert sorted(run.accepted) == sorted(run.completed), run
        chat_updates += [u for u in run.accepted if u.startswith("chat-")]
    assert sorted(chat_updates) == sorted(f"chat-{m}" for m in everything)
    assert all(r.next_run_id for r in runs[:-1]) and not runs[-1].next_run_id


# --- cancel and delete ------------------------------------------------------------------------


async def test_cancel_ends_the_turn_in_progress_and_the_agent_answers_the_next(
    harness: Harness,
) -> None:
    fake = harness.fake
    assert await (await harness.create_agent()).control(Command.CANCEL) == AgentStatus.IDLE
    fake.gate = asyncio.Event()
    agent = await harness.create_agent()
    held = await agent.send("a long task", "m1")
    await fake.wait_for_requests(1)

    started = time.monotonic()
    await agent.control(Command.CANCEL)
    result = await within(held.result())
    assert time.monotonic() - started < 5
    assert fake.cancelled_calls == 1
    assert kinds(result.events) == [
        EventKind.USER_MESSAGE,
        EventKind.STATUS,
        EventKind.TEXT,
        EventKind.ERROR,
    ]
    assert [e.seq for e in result.events] == list(range(1, 5))
    assert result.events[2].text == "You"  # what was streamed before the cancel
    cancelled = result.events[-1]
    assert (cancelled.code, cancelled.text) == (ErrorCode.CANCELLED, "turn cancelled")
    turn = (await agent.history()).turns[0]
    assert (turn.outcome, turn.reply) == (TurnOutcome.CANCELLED, "")

    fake.gate = None
    answered = await agent.ask("something short", "m2")
    assert answered.first_seq == result.last_seq + 1
    assert_whole_turn(answered, "You said: something short")
    # The cancelled turn is not part of the agent's memory.
    assert prompt_users(fake.requests[-1]) == ["something short"]
    assert (await agent.describe()).status == AgentStatus.IDLE


async def test_delete_cancels_the_turn_and_answers_queued_messages_with_an_error(
    harness: Harness,
) -> None:
    fake = harness.fake
    fake.gate = asyncio.Event()
    agent = await harness.create_agent()
    running = await agent.send("in progress", "m1")
    await fake.wait_for_requests(1)
    queued = [await agent.send(f"waiting {i}", f"m{i}") for i in (2, 3)]

    await agent.delete()
    result = await within(running.result())
    assert result.events[-1].kind == EventKind.ERROR
    assert result.events[-1].code == ErrorCode.CANCELLED
    for update in queued:
        with pytest.raises(WorkflowUpdateFailedError) as raised:
            await within(update.result())
        failure = update_failure(raised)
        assert failure.type == ErrorType.FAILED_PRECONDITION
        assert "deleted before this message was answered" in failure.message
    assert await agent.result() == AgentStatus.DELETED
    assert [r.message_id for r in fake.requests] == ["m1"]

    info = await agent.describe()
    assert (info.status, info.queued_messages) == (AgentStatus.DELETED, 0)
    assert [t.message_id for t in (await agent.history()).turns] == ["m1"]
    # The agent takes nothing more; the gateway tells the client it was deleted.
    with pytest.raises(RPCError) as refused:
        await agent.send("anyone there?", "m4")
    assert from_temporal(refused.value, agent.agent_id).code == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_new_agent_is_idle_with_nothing_recorded(harness: Harness) -> None:
    agent: Agent = await harness.create_agent(goal="A goal.")
    info = await agent.describe()
    assert (info.status, info.last_seq, info.spec.goal) == (AgentStatus.IDLE, 0, "A goal.")
    page = await agent.events()
    assert (page.events, page.in_flight, page.archived_through) == ([], None, 0)
    assert len(await agent.runs()) == 1
    assert await agent.search_status() == AgentStatus.IDLE


async def test_a_worker_tool_announces_its_call_and_a_cancel_while_it_runs_ends_the_turn(
    harness: Harness,
) -> None:
    """The tool's activity carries the call's announcement (no announce activity of its own,
    behind ANNOUNCE_WITH_TOOL); the client cancels while the tool runs: the turn ends cancelled.
    (The older path, which could stop the tool before it started, replays from recorded
    histories: agent-v0.6.0-cancel-before-tool.json.)"""
    fake = harness.fake
    work = AgentTool(
        name="work",
        kind=ToolKind.WORKER,
        function={"type": "function", "function": {"name": "work", "parameters": {}}},
    )
    fake.reply = lambda r: (
        LLMResult(
            outcome=TurnOutcome.COMPLETED,
            pieces=[],
            tool_calls=[ToolCall(call_id="c", name="work", arguments="{}")],
        )
        if not r.tool_rounds
        else "Done."
    )
    agent = await harness.create_agent(tools=[work])
    turn = await agent.send("work", "m1")
    await eventually(lambda: bool(fake.tool_calls), "the tool to run")
    (call,) = fake.tool_calls
    assert call.announce is not None and fake.announced == []
    assert [e.kind for e in call.announce.events][-1] == EventKind.TOOL_CALL
    await agent.control(Command.CANCEL)
    result = await within(turn.result())
    assert result.events[-1].kind == EventKind.ERROR and result.events[-1].code == "CANCELLED"
    # The new path (behind its patches) replays.
    replayer = Replayer(workflows=[AgentWorkflow], workflow_runner=workflow_runner())
    replayed = await replayer.replay_workflow(await agent.handle.fetch_history())
    assert replayed.replay_failure is None


async def test_the_handlers_of_older_releases_still_answer(harness: Harness) -> None:
    """A gateway or worker of an older release, during a rolling upgrade, calls the handlers
    that took bare values, by their old names: they do what the new ones do."""
    agent = await harness.create_agent()
    handle = agent.handle
    await agent.ask("hello", "m1")
    old_wait = handle.execute_update(Update.WAIT_TURN, "m1", result_type=TurnResult)
    assert (await within(old_wait)).last_seq > 0
    with pytest.raises(WorkflowUpdateFailedError):
        await within(handle.execute_update(Update.WAIT_TURN, "nope", result_type=TurnResult))
    with pytest.raises(WorkflowUpdateFailedError):
        await within(handle.execute_update(Update.CONTROL, "bogus", result_type=str))
    paused = handle.execute_update(Update.CONTROL, Command.PAUSE, result_type=str)
    assert await within(paused) == AgentStatus.PAUSED
    await agent.send("never mind", "m2")
    await within(handle.execute_update(Update.WITHDRAW, "m2", result_type=str))
    await within(handle.signal(Signal.ADD_CHILD, "helper-1"))
    page = await within(handle.query(Query.EVENTS_SINCE, 0, result_type=EventsPage))
    assert [e.message_id for e in page.events if e.kind == EventKind.USER_MESSAGE] == ["m1"]
    info = await agent.describe()
    assert info.children == ["helper-1"] and info.queued_messages == 0

"""Messages sent while the agent works, by policy (queue, steer, interrupt, reject), in-process on
the real dev server: where a message is taken in, what the model is sent, and that under races at
a step boundary every message is answered exactly once and every history replays."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from engram.vocabulary import DoubleTexting, ErrorType, EventKind, Notice, TurnOutcome
from engram.worker import workflow_runner
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.types import (
    EditInput,
    Event,
    LLMRequest,
    LLMResult,
    ToolCall,
    TurnResult,
)
from tests.workflow_harness import Agent, Harness, within


def remembers(request: LLMRequest) -> str | LLMResult:
    """Keeps a note on the first call of a turn, then answers with every user word it was sent."""
    if not request.tool_rounds or not any(r.calls for r in request.tool_rounds):
        call = ToolCall("x", "remember", json.dumps({"name": "seen", "content": "yes"}))
        return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=[], tokens=5, tool_calls=[call])
    return "Answered: " + " + ".join(users_in(request))


def users_in(request: LLMRequest) -> list[str]:
    """What the user said in this turn: its message, then what was added after tool rounds."""
    said = [request.messages[-1].content]
    for round_ in request.tool_rounds:
        said += round_.then
    return said


def final(result: TurnResult) -> str:
    [answer] = [e.text for e in result.events if e.kind == EventKind.FINAL_ANSWER]
    return answer


def joined_to(result: TurnResult) -> str | None:
    """The turn a message was taken into, from its own turn's events; None if answered itself."""
    kinds = [e.kind for e in result.events]
    if kinds == [EventKind.USER_MESSAGE, EventKind.STATUS]:
        assert result.events[1].code == Notice.JOINED
        return result.events[1].text
    assert kinds[0] == EventKind.USER_MESSAGE and kinds[-1] == EventKind.FINAL_ANSWER, kinds
    return None


def assert_calls_answered(requests: list[LLMRequest]) -> None:
    """Nothing the model is sent leaves a tool call without its result."""
    for request in requests:
        for round_ in request.tool_rounds:
            assert len(round_.results) == len(round_.calls)


async def steer_agent(harness: Harness, policy: DoubleTexting) -> Agent:
    return await harness.create_agent(config={"doubleTexting": policy})


async def test_steer_takes_a_message_in_after_the_tool_results(harness: Harness) -> None:
    fake = harness.fake
    fake.reply, fake.gate, fake.hold_calls = remembers, asyncio.Event(), True
    agent = await steer_agent(harness, DoubleTexting.STEER)
    first = await agent.send("check the disk", "a")
    await fake.wait_for_requests(1)  # the model is deciding on its tool call
    second = await agent.send("and the memory", "b")
    fake.gate.set()

    a, b = await within(first.result()), await within(second.result())
    assert joined_to(b) == "a" and b.events[0].text == "and the memory"
    assert final(a) == "Answered: check the disk + and the memory"
    # One turn answered both, after the tool call had its result; nothing was cancelled.
    assert [r.message_id for r in fake.requests] == ["a", "a"]
    [round_] = fake.requests[1].tool_rounds
    assert round_.calls and round_.results and round_.then == ["and the memory"]
    assert fake.cancelled_calls == 0
    # The conversation remembers the added message with the turn that answered it.
    fake.reply = lambda r: " | ".join(m.content for m in r.messages if m.role != "system")
    c = await agent.ask("what did I ask?", "c")
    assert final(c).startswith(
        "check the disk | and the memory | Answered: check the disk + and the memory"
    )
    info = await agent.describe()
    assert info.completed_turns == 2 and info.queued_messages == 0


async def test_steer_answers_a_message_itself_when_the_turn_ends_first(harness: Harness) -> None:
    fake = harness.fake
    fake.gate = asyncio.Event()
    agent = await steer_agent(harness, DoubleTexting.STEER)
    first = await agent.send("hello", "a")
    await fake.wait_for_requests(1)  # an answer without tools: there is no next step
    second = await agent.send("are you there?", "b")
    fake.gate.set()
    a, b = await within(first.result()), await within(second.result())
    assert final(a) == "You said: hello"
    assert joined_to(b) is None and final(b) == "You said: are you there?"


async def test_interrupt_cuts_off_the_call_and_takes_the_message_in(harness: Harness) -> None:
    fake = harness.fake
    fake.gate = asyncio.Event()
    fake.reply = lambda r: "Answered: " + " + ".join(users_in(r))
    agent = await steer_agent(harness, DoubleTexting.INTERRUPT)
    first = await agent.send("write a long essay", "a")
    await fake.wait_for_requests(1)  # streaming, held after its first word
    second = await agent.send("no, a haiku", "b")
    b = await within(second.result())
    fake.gate.set()
    a = await within(first.result())

    assert joined_to(b) == "a"
    assert fake.cancelled_calls == 1
    notices = [e.code for e in a.events if e.kind == EventKind.STATUS]
    assert Notice.INTERRUPTED in notices
    # The cut-off text was shown (and stays in the record) but the model is not sent it.
    assert "Answered:" in "".join(e.text for e in a.events if e.kind == EventKind.TEXT)
    [round_] = fake.requests[1].tool_rounds
    assert (round_.calls, round_.text, round_.then) == ([], "", ["no, a haiku"])
    assert final(a) == "Answered: write a long essay + no, a haiku"
    assert a.events[-1].kind == EventKind.FINAL_ANSWER


async def test_reject_refuses_a_message_while_the_agent_works(harness: Harness) -> None:
    fake = harness.fake
    fake.gate = asyncio.Event()
    agent = await steer_agent(harness, DoubleTexting.REJECT)
    first = await agent.send("hello", "a")
    await fake.wait_for_requests(1)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await agent.ask("me again", "b")
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == ErrorType.FAILED_PRECONDITION
    assert "double_texting policy is reject" in cause.message
    await agent.send("hello", "a", update_id="resend-a")  # a resend is not a new message
    fake.gate.set()
    await within(first.result())
    assert final(await agent.ask("now?", "c")) == "You said: now?"


async def test_a_run_takes_a_message_in_at_its_next_step(harness: Harness) -> None:
    fake = harness.fake

    def run_step(request: LLMRequest) -> LLMResult:
        added = [t for r in request.tool_rounds for t in r.then]
        if added:
            answer = json.dumps({"answer": f"Done, and noted: {added[0]}"})
            call = ToolCall("f", "finish", answer)
        else:
            call = ToolCall("r", "remember", json.dumps({"name": "step", "content": "1"}))
        return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=[], tokens=5, tool_calls=[call])

    fake.reply, fake.gate, fake.hold_calls = run_step, asyncio.Event(), True
    agent = await harness.create_agent(autonomous=True)  # the default policy: queue
    await fake.wait_for_requests(1)
    sent = await agent.send("use the staging cluster", "b")
    fake.gate.set()
    b = await within(sent.result())
    assert joined_to(b) == "run-1"
    run = await agent.wait_turn("run-1")
    assert final(run) == "Done, and noted: use the staging cluster"
    assert_calls_answered(fake.requests)


async def test_the_policy_is_edited_like_any_setting(harness: Harness) -> None:
    fake = harness.fake
    fake.gate = asyncio.Event()
    agent = await harness.create_agent()
    await agent.edit(EditInput(double_texting=DoubleTexting.REJECT))
    assert (await agent.describe()).spec.config["doubleTexting"] == "reject"
    first = await agent.send("hello", "a")
    await fake.wait_for_requests(1)
    with pytest.raises(WorkflowUpdateFailedError):
        await agent.ask("me again", "b")
    fake.gate.set()
    await within(first.result())


@pytest.mark.parametrize("policy", [DoubleTexting.STEER, DoubleTexting.INTERRUPT])
async def test_a_message_at_a_step_boundary_is_answered_exactly_once(
    harness: Harness, policy: DoubleTexting
) -> None:
    """The second message lands anywhere from before the first LLM call to after the answer:
    each time it is either taken in (and the model sees it once, after the tool results) or
    answered on its own, never both or neither, and the decision replays the same."""
    fake = harness.fake
    fake.reply = remembers
    rng = random.Random(7)
    outcomes: dict[str, int] = {"joined": 0, "alone": 0}
    agents = []
    for i in range(16):
        agent = await steer_agent(harness, policy)
        agents.append(agent)
        first = await agent.send("first", f"a{i}")
        await asyncio.sleep(rng.uniform(0, 0.06))
        second = await agent.send("second", f"b{i}")
        a, b = await within(first.result()), await within(second.result())
        seen_in_a = [t for r in fake.requests if r.message_id == f"a{i}" for t in users_in(r)[1:]]
        if joined_to(b) == f"a{i}":
            outcomes["joined"] += 1
            assert final(a) == "Answered: first + second"
            assert seen_in_a.count("second") >= 1
        else:
            outcomes["alone"] += 1
            assert final(a) == "Answered: first" and final(b) == "Answered: second"
            assert "second" not in seen_in_a
        # No sequence id missing or given twice over both turns (a joined message's events are
        # inside the turn that took it in).
        by_seq = {e.seq: e for e in a.events}
        for event in b.events:
            assert by_seq.setdefault(event.seq, event) == event
        assert sorted(by_seq) == list(range(min(by_seq), min(by_seq) + len(by_seq)))
    assert_calls_answered(fake.requests)
    assert sum(outcomes.values()) == 16
    replayer = Replayer(workflows=[AgentWorkflow], workflow_runner=workflow_runner())
    for agent in agents:
        history = await agent.handle.fetch_history()
        assert (await replayer.replay_workflow(history)).replay_failure is None


def _events_are(events: list[Event], kinds: list[EventKind]) -> bool:
    return [e.kind for e in events] == kinds


async def test_queue_keeps_chat_turns_one_after_another(harness: Harness) -> None:
    fake = harness.fake
    fake.reply, fake.gate, fake.hold_calls = remembers, asyncio.Event(), True
    agent = await harness.create_agent()  # no policy set: queue
    first = await agent.send("check the disk", "a")
    await fake.wait_for_requests(1)
    second = await agent.send("and the memory", "b")
    fake.gate.set()
    a, b = await within(first.result()), await within(second.result())
    assert final(a) == "Answered: check the disk"
    assert final(b) == "Answered: and the memory"
    assert _events_are(b.events[:2], [EventKind.USER_MESSAGE, EventKind.STATUS])
    assert b.events[1].code == Notice.THINKING

"""JSON from outside the workflow (the model's arguments, a person's edited input) can only end in
a value or a clear refusal: never an exception that fails the workflow task and wedges the agent."""

from __future__ import annotations

import json

import grpc
import pytest
from temporalio.worker import Replayer

from engram.gateway.errors import GatewayError
from engram.gateway.tool_specs import decision
from engram.v1 import agent_pb2
from engram.vocabulary import EventKind, TurnOutcome
from engram.worker import workflow_runner
from engram.workflows.agent_workflow import AgentWorkflow
from engram.workflows.model_json import (
    MAX_BYTES,
    MAX_DEPTH,
    NotAnObject,
    UnusableJSON,
    depth,
    parse_object,
)
from engram.workflows.tool_use import check_arguments
from engram.workflows.types import LLMRequest, LLMResult, ToolCall
from tests.workflow_harness import Harness, within

DEEP = '{"name": "n", "content": ' + "[" * 5000 + "]" * 5000 + "}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (DEEP, "nested deeper than"),
        ("[" * 5000, "nested deeper than"),
        ('{"a": ' + "[" * (MAX_DEPTH) + "]" * MAX_DEPTH + "}", "nested deeper than"),
        ('{"a": "' + "x" * MAX_BYTES + '"}', f"the limit is {MAX_BYTES}"),
        ("{not json", "not valid JSON"),
    ],
)
def test_unusable_json_is_refused_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(UnusableJSON, match=problem):
        parse_object(text)


def test_json_within_the_budget_parses() -> None:
    nested = '{"a": ' + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "}"
    assert depth(parse_object(nested)) == MAX_DEPTH
    assert parse_object("") == {}
    with pytest.raises(NotAnObject):
        parse_object("[1]")


def test_depth_counts_containers_without_recursing() -> None:
    assert (depth(1), depth({}), depth({"a": [1, {"b": []}]})) == (0, 1, 4)
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    assert depth(value) == 100_001


def test_an_oversized_or_deep_edited_approval_input_is_invalid_argument() -> None:
    for edited in ('{"q": "' + "x" * 2_000_000 + '"}', DEEP):
        with pytest.raises(GatewayError) as raised:
            decision(agent_pb2.Approval(call_id="c1", approved=True, edited_input_json=edited))
        assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "approval.edited_input_json is" in raised.value.message
        # The workflow's validator refuses it too, whoever calls the update.
        problem = check_arguments(edited)
        assert problem is not None and problem.startswith("edited input is")


async def test_a_remember_call_nested_5000_deep_is_refused_and_the_agent_goes_on(
    harness: Harness,
) -> None:
    fake = harness.fake

    def reply(request: LLMRequest) -> LLMResult | str:
        if request.tool_rounds or "again" in request.messages[-1].content:
            return "Fine."
        call = ToolCall(call_id="deep", name="remember", arguments=DEEP)
        return LLMResult(outcome=TurnOutcome.COMPLETED, pieces=[], tool_calls=[call])

    fake.reply = reply
    agent = await harness.create_agent()
    first = await within(agent.ask("keep this", "m1"))
    assert first.events[-1].kind == EventKind.FINAL_ANSWER
    results = [e for e in first.events if e.kind == EventKind.TOOL_RESULT]
    assert len(results) == 1 and "nested deeper than" in results[0].text
    assert fake.requests[-1].tool_rounds[0].results[0].startswith("error: arguments are nested")
    second = await within(agent.ask("again", "m2"))
    assert second.events[-1].text == "Fine."
    assert (await agent.describe()).spec.goal
    replayer = Replayer(workflows=[AgentWorkflow], workflow_runner=workflow_runner())
    replayed = await replayer.replay_workflow(await agent.handle.fetch_history())
    assert replayed.replay_failure is None


def test_a_deep_structured_answer_is_refused_before_it_reaches_protobuf() -> None:
    from engram.workflows import autonomy

    structured = "[" * 200 + "]" * 200
    call = ToolCall(call_id="f", name=autonomy.FINISH, arguments=json.dumps({"answer": "x"})[:-1])
    call.arguments += f', "structured": {{"a": {structured}}}}}'
    with pytest.raises(autonomy.ArgumentError, match="nested deeper than"):
        autonomy.finished(call)

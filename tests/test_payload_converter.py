"""Engram's payload converter decodes and encodes exactly what Temporal's default does, faster.

Every payload of every recorded history that is one of the workflow's dataclasses (the agent's
state, the LLM call's input and result, chat inputs, turn results) is decoded both ways, and
encoded again both ways.
"""

from __future__ import annotations

import datetime
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payloads
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from engram.codec.payload_codec import PLAIN
from engram.workflows.types import (
    AgentState,
    ChatInput,
    ChatMessage,
    LLMRequest,
    LLMResult,
    TurnResult,
)

HISTORIES = sorted((Path(__file__).parent / "histories").glob("agent-*.json"))
DEFAULT = DataConverter.default.payload_converter
OURS = PLAIN.payload_converter


def typed_payloads(history: WorkflowHistory) -> list[tuple[Payloads, type]]:
    """(payloads, the dataclass they hold) found in a history."""
    found: list[tuple[Payloads, type]] = []
    llm_calls: set[int] = set()
    for event in history.events:
        kind = event.WhichOneof("attributes")
        if kind == "workflow_execution_started_event_attributes":
            found.append((event.workflow_execution_started_event_attributes.input, AgentState))
        elif kind == "activity_task_scheduled_event_attributes":
            scheduled = event.activity_task_scheduled_event_attributes
            if scheduled.activity_type.name == "stream_chat":
                llm_calls.add(event.event_id)
                found.append((scheduled.input, LLMRequest))
        elif kind == "activity_task_completed_event_attributes":
            completed = event.activity_task_completed_event_attributes
            if completed.scheduled_event_id in llm_calls:
                found.append((completed.result, LLMResult))
        elif kind == "workflow_execution_update_accepted_event_attributes":
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.name == "chat":
                found.append((request.input.args, ChatInput))
        elif kind == "workflow_execution_update_completed_event_attributes":
            outcome = event.workflow_execution_update_completed_event_attributes.outcome
            if outcome.HasField("success") and b'"events"' in outcome.success.SerializeToString():
                found.append((outcome.success, TurnResult))
    return found


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
def test_every_recorded_payload_decodes_as_temporal_decodes_it(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    payloads = typed_payloads(history)
    assert any(kind is LLMRequest for _, kind in payloads)
    for found, kind in payloads:
        expected = DEFAULT.from_payloads(found.payloads, [kind])
        assert OURS.from_payloads(found.payloads, [kind]) == expected
        assert type(expected[0]) is kind
        assert OURS.to_payloads(expected) == DEFAULT.to_payloads(expected)


def test_values_beside_dataclasses_encode_as_in_temporal() -> None:
    message = ChatMessage("user", "hi")
    values: list[Any] = [
        {"nested": [message, (message,)], "set": {3}},
        datetime.datetime(2026, 12, 4, 5, 0, tzinfo=datetime.UTC),
        uuid.UUID(int=7),
        [message, None, 1.5],
        ChatMessage,  # a class, not an instance: refused by both
    ]
    for value in values[:-1]:
        assert OURS.to_payloads([value]) == DEFAULT.to_payloads([value])
    for converter in (DEFAULT, OURS):
        with pytest.raises(TypeError, match="not JSON serializable"):
            converter.to_payloads([values[-1]])


def test_a_missing_field_and_a_wrong_type_fail_as_in_temporal() -> None:
    [bad] = DEFAULT.to_payloads([{"role": "user"}])
    for converter in (DEFAULT, OURS):
        with pytest.raises(TypeError):
            converter.from_payloads([bad], [ChatMessage])
    [wrong] = DEFAULT.to_payloads([{"role": 1, "content": "x"}])
    for converter in (DEFAULT, OURS):
        with pytest.raises(Exception, match="role"):
            converter.from_payloads([wrong], [ChatMessage])
    [not_a_list] = DEFAULT.to_payloads([5])
    [bad_item] = DEFAULT.to_payloads([[{"role": "user", "content": "x"}, 7]])
    for converter in (DEFAULT, OURS):
        with pytest.raises(TypeError, match="Expected list"):
            converter.from_payloads([not_a_list], [list[ChatMessage]])
        with pytest.raises(TypeError, match="index 1"):
            converter.from_payloads([bad_item], [list[ChatMessage]])


def test_a_long_prompt_decodes_several_times_faster_and_encodes_faster() -> None:
    request = LLMRequest(
        agent_id="a",
        message_id="m",
        model="m",
        messages=[ChatMessage("user", f"message {i} " * 20) for i in range(300)],
        prelude=[],
        first_text_seq=1,
    )
    payloads = DEFAULT.to_payloads([request])

    def best_of(converter: Any) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert converter.from_payloads(payloads, [LLMRequest]) == [request]
            times.append(time.perf_counter() - start)
        return min(times)

    assert best_of(OURS) * 3 < best_of(DEFAULT)

    def best_encode(converter: Any) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            converter.to_payloads([request])
            times.append(time.perf_counter() - start)
        return min(times)

    assert best_encode(OURS) * 1.5 < best_encode(DEFAULT)

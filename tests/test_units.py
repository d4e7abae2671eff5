"""Plain unit tests, no Temporal server: input checks, error mapping, memory notes, wire messages.

Each function here is pure, so every case is cheap: the point is to cover every refusal and every
kind of message, which the end-to-end tests only sample.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode

from engram.auth.limits import LimitExceeded
from engram.gateway import validation
from engram.gateway.errors import GatewayError, from_temporal, invalid
from engram.messages import RESTART_NOTICE, ends_turn, timestamp, to_piece, to_server_message
from engram.v1 import agent_pb2
from engram.vocabulary import TOOL_ERROR, ErrorCode, ErrorType, EventKind, Notice
from engram.workflows import memory
from engram.workflows.function_tool import function_tool
from engram.workflows.types import EditInput, Event, MemoryNote, StreamPiece, ToolCall

AGENT = "3f2a9c4e-8b1d-4e6f-9a7c-2d5e8f1b3c6a"


def refusal(call: Any, *args: Any) -> GatewayError:
    """The INVALID_ARGUMENT `call(*args)` raises."""
    with pytest.raises(GatewayError) as raised:
        call(*args)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return raised.value


# --- ids and content --------------------------------------------------------------------------


def test_agent_ids_are_uuids() -> None:
    assert validation.agent_id(AGENT) == AGENT
    assert validation.agent_id(AGENT.upper()) == AGENT
    assert "agent_id is required" in refusal(validation.agent_id, "").message
    for bad in (
        "not-a-uuid",
        AGENT.replace("-", ""),  # uuid.UUID accepts it; an agent id is the canonical form
        "{" + AGENT + "}",
        f"urn:uuid:{AGENT}",
        AGENT + "0",
        " " + AGENT,
    ):
        assert "agent_id" in refusal(validation.agent_id, bad).message, bad
    # An id is quoted back cut short, not whole.
    assert len(refusal(validation.agent_id, "x" * 10_000).message) < 200


def test_message_ids() -> None:
    for good in ("m1", "a" * 128, "client-7:msg.42@host_x", str(uuid.uuid4())):
        assert validation.message_id(good) == good
    for bad in ("", "a" * 129, "has space", "with#hash", "slash/", "tab\t", "é"):
        assert "message_id" in refusal(validation.message_id, bad).message, bad


def test_content_must_be_non_empty_and_within_the_limit_in_bytes() -> None:
    assert validation.content("hello", 10) == "hello"
    assert validation.content(" padded ", 8) == " padded "  # kept as sent
    assert validation.content("x" * 10, 10) == "x" * 10
    for empty in ("", "   ", "\n\t "):
        assert "empty" in refusal(validation.content, empty, 10).message
    assert "11 bytes; the limit is 10" in refusal(validation.content, "x" * 11, 10).message
    # Six characters, twelve bytes.
    assert "12 bytes" in refusal(validation.content, "é" * 6, 10).message


# --- CreateAgent ------------------------------------------------------------------------------


def create(**fields: Any) -> agent_pb2.CreateAgentRequest:
    return agent_pb2.CreateAgentRequest(**{"goal": "g", "model": "m", **fields})


def test_a_create_request_names_its_model() -> None:
    assert validation.create_request(create(), "") == "m"
    assert validation.create_request(create(model="  llama3 "), "") == "llama3"
    assert validation.create_request(create(model=""), "default-model") == "default-model"
    assert validation.create_request(create(model="mine"), "default-model") == "mine"
    assert "model is required" in refusal(validation.create_request, create(model=" "), "").message


def test_a_create_request_within_its_limits_passes() -> None:
    request = create(
        goal="g" * validation.MAX_FIELD_BYTES,
        system_prompt="s" * validation.MAX_FIELD_BYTES,
        metadata={str(i): "v" for i in range(validation.MAX_METADATA_ENTRIES)},
        config=agent_pb2.AgentConfig(temperature=2.0, max_context_tokens=0, max_steps=0),
        tools=[agent_pb2.Tool(name="a"), agent_pb2.Tool(name="b")],
    )
    assert validation.create_request(request, "") == "m"


@pytest.mark.parametrize(
    ("request_fields", "names"),
    [
        ({"goal": "g" * (validation.MAX_FIELD_BYTES + 1)}, "goal"),
        ({"goal": "é" * (validation.MAX_FIELD_BYTES // 2 + 1)}, "goal"),
        ({"system_prompt": "s" * (validation.MAX_FIELD_BYTES + 1)}, "system_prompt"),
        ({"metadata": {str(i): "v" for i in range(65)}}, "metadata"),
        ({"config": agent_pb2.AgentConfig(temperature=-0.1)}, "temperature"),
        ({"config": agent_pb2.AgentConfig(temperature=2.1)}, "temperature"),
        ({"config": agent_pb2.AgentConfig(max_context_tokens=-1)}, "config"),
        ({"config": agent_pb2.AgentConfig(max_steps=-1)}, "config"),
        ({"tools": [agent_pb2.Tool(name="a"), agent_pb2.Tool(name="a")]}, "tool"),
        ({"tools": [agent_pb2.Tool(name="")]}, "tool"),
    ],
)
def test_a_bad_create_request_is_refused(request_fields: dict[str, Any], names: str) -> None:
    assert names in refusal(validation.create_request, create(**request_fields), "").message


def test_status_filter() -> None:
    for good in ("", "idle", "thinking", "paused", "deleted"):
        assert validation.status_filter(good) == good
    for bad in ("running", "IDLE", "idle ", "completed"):
        assert "status_filter" in refusal(validation.status_filter, bad).message


# --- Edit -------------------------------------------------------------------------------------


def edit_request(patch: dict[str, Any], description: str = "") -> agent_pb2.Edit:
    struct = Struct()
    struct.update(patch)
    return agent_pb2.Edit(patch=struct, description=description)


def test_a_whole_edit_becomes_an_edit_input() -> None:
    result, tools = validation.edit(
        edit_request(
            {
                "goal": "New goal",
                "system_prompt": "",
                "temperature": 1,
                "max_context_tokens": 4096,
                "memory": {"color": "blue", "old": "", "older": None},
            },
            "why",
        )
    )
    assert result == EditInput(
        goal="New goal",
        system_prompt="",
        temperature=1.0,
        max_context_tokens=4096,
        memory={"color": "blue", "old": "", "older": ""},
        description="why",
    )
    assert isinstance(result.max_context_tokens, int) and isinstance(result.temperature, float)
    assert tools is None


def edited(patch: dict[str, Any], description: str = "") -> EditInput:
    return validation.edit(edit_request(patch, description))[0]


def test_an_edit_names_tools_and_policies() -> None:
    change, tools = validation.edit(
        edit_request(
            {
                "tools": ["add", {"name": "get_location", "parametersSchema": {"type": "object"}}],
                "approvals": {"deploy": "always"},
            }
        )
    )
    assert tools is not None and [t.name for t in tools] == ["add", "get_location"]
    assert tools[1].parameters_schema["type"] == "object"
    assert change.approvals == {"deploy": "always"}
    for bad in ({"approvals": {"deploy": "sometimes"}}, {"tools": "add"}, {"tools": [1]}):
        with pytest.raises(GatewayError) as refused:
            validation.edit(edit_request(bad))
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert str(next(iter(bad))) in refused.value.message


def test_an_edit_leaves_what_it_does_not_name() -> None:
    assert edited({"goal": "only this"}) == EditInput(goal="only this")
    assert edited({"temperature": 0}).temperature == 0.0
    assert edited({"max_context_tokens": 0}).max_context_tokens == 0
    assert edited({"memory": {}}).memory == {}
    limit = validation.MAX_FIELD_BYTES
    assert edited({"goal": "g" * limit}).goal == "g" * limit
    assert edited({"temperature": 2}).temperature == 2.0
    # The description is only shown, in the edited notice: cut, never refused.
    assert len(edited({"goal": "g"}, "d" * 5000).description) <= 1000


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"colour": "blue"}, "colour"),
        ({"goal": "fine", "model": "gpt-5"}, "model"),
        ({"goal": 5}, "goal"),
        ({"goal": ["a"]}, "goal"),
        ({"goal": {"text": "a"}}, "goal"),
        ({"goal": True}, "goal"),
        ({"goal": "g" * (validation.MAX_FIELD_BYTES + 1)}, "goal"),
        ({"system_prompt": 1}, "system_prompt"),
        ({"system_prompt": "s" * (validation.MAX_FIELD_BYTES + 1)}, "system_prompt"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": None}, "temperature"),
        ({"temperature": [1]}, "temperature"),
        ({"max_context_tokens": 1.5}, "max_context_tokens"),
        ({"max_context_tokens": -1}, "max_context_tokens"),
        ({"max_context_tokens": 2**31}, "max_context_tokens"),
        ({"max_context_tokens": "many"}, "max_context_tokens"),
        ({"max_context_tokens": None}, "max_context_tokens"),
        ({"memory": "remember this"}, "memory"),
        ({"memory": ["a", "b"]}, "memory"),
        ({"memory": {"n": 5}}, "memory"),
        ({"memory": {"n": {"nested": "x"}}}, "memory"),
        ({"memory": {"n": ["x"]}}, "memory"),
        # A good field does not carry a bad one through.
        ({"goal": "fine", "temperature": 3}, "temperature"),
    ],
)
def test_a_bad_edit_is_refused_naming_the_field(patch: dict[str, Any], field: str) -> None:
    assert field in refusal(validation.edit, edit_request(patch)).message


def test_an_empty_edit_is_refused() -> None:
    refusal(validation.edit, edit_request({}))
    refusal(validation.edit, agent_pb2.Edit(description="nothing to change"))


# --- error mapping ----------------------------------------------------------------------------


def rpc_error(status: RPCStatusCode, message: str) -> RPCError:
    return RPCError(message, status, b"")


def update_failed(cause: BaseException) -> WorkflowUpdateFailedError:
    return WorkflowUpdateFailedError(cause)


@pytest.mark.parametrize(
    ("err", "code", "message"),
    [
        (
            rpc_error(RPCStatusCode.NOT_FOUND, "workflow not found for ID: agent-x"),
            grpc.StatusCode.NOT_FOUND,
            f"agent {AGENT} not found",
        ),
        (
            rpc_error(RPCStatusCode.NOT_FOUND, "workflow execution already completed"),
            grpc.StatusCode.FAILED_PRECONDITION,
            f"agent {AGENT} has been deleted",
        ),
        (
            rpc_error(RPCStatusCode.UNAVAILABLE, "connection refused"),
            grpc.StatusCode.UNAVAILABLE,
            "Temporal is unavailable; try again",
        ),
        (
            rpc_error(RPCStatusCode.DEADLINE_EXCEEDED, "deadline"),
            grpc.StatusCode.UNAVAILABLE,
            "Temporal is unavailable; try again",
        ),
        (
            rpc_error(RPCStatusCode.PERMISSION_DENIED, "secret detail"),
            grpc.StatusCode.INTERNAL,
            "Temporal error: PERMISSION_DENIED",
        ),
        (
            update_failed(
                ApplicationError(
                    "Workflow Update failed because the Workflow completed before the Update "
                    "completed.",
                    type=ErrorType.ACCEPTED_UPDATE_COMPLETED_WORKFLOW,
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            f"agent {AGENT} was deleted mid-turn",
        ),
        (
            update_failed(
                ApplicationError("no failed turn to retry", type=ErrorType.FAILED_PRECONDITION)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "no failed turn to retry",
        ),
        (
            update_failed(ApplicationError("content is empty", type="ValueError")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "content is empty",
        ),
        (
            update_failed(ApplicationError("memory note 'x': name must be 1 to 64 characters")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "memory note 'x': name must be 1 to 64 characters",
        ),
        (
            update_failed(CancelledError("cancelled")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "cancelled",
        ),
        (
            WorkflowUpdateRPCTimeoutOrCancelledError(),
            grpc.StatusCode.UNAVAILABLE,
            "timed out waiting for the agent",
        ),
        (
            WorkflowQueryFailedError("query handler raised"),
            grpc.StatusCode.INTERNAL,
            f"agent {AGENT} could not be read",
        ),
        (
            WorkflowQueryRejectedError(WorkflowExecutionStatus.FAILED),
            grpc.StatusCode.INTERNAL,
            f"agent {AGENT} could not be read",
        ),
        (
            LimitExceeded("over 5 calls per second"),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "over 5 calls per second",
        ),
        (ValueError("a stack trace detail"), grpc.StatusCode.INTERNAL, "internal error"),
        (RuntimeError("boom"), grpc.StatusCode.INTERNAL, "internal error"),
    ],
)
def test_temporal_failures_map_to_grpc_statuses(
    err: BaseException, code: grpc.StatusCode, message: str
) -> None:
    status = from_temporal(err, AGENT)
    assert (status.code, status.message) == (code, message)
    assert str(status) == message


def test_a_gateway_error_passes_through_unchanged() -> None:
    err = invalid("bad input")
    assert from_temporal(err, AGENT) is err
    assert (err.code, err.message) == (grpc.StatusCode.INVALID_ARGUMENT, "bad input")


# --- function tools ---------------------------------------------------------------------------


def test_function_tool_is_openais_shape_with_its_key_order() -> None:
    # Part of the LLM activity's recorded input: the serialized bytes must never change.
    tool = function_tool("lookup", "Find it.", {"type": "object"})
    assert json.dumps(tool) == (
        '{"type": "function", "function": {"name": "lookup", "description": "Find it.", '
        '"parameters": {"type": "object"}}}'
    )


# --- memory notes -----------------------------------------------------------------------------


def test_write_saves_updates_and_deletes() -> None:
    notes: list[MemoryNote] = []
    assert memory.write(notes, " name ", " Ada ", 1.0) == "saved note 'name'"
    assert notes == [MemoryNote("name", "Ada", 1.0)]
    assert memory.write(notes, "city", "Paris", 2.0) == "saved note 'city'"
    assert memory.write(notes, "name", "Grace", 3.0) == "updated note 'name'"
    assert notes == [MemoryNote("name", "Grace", 3.0), MemoryNote("city", "Paris", 2.0)]
    assert memory.write(notes, "name", "   ", 4.0) == "deleted note 'name'"
    assert memory.write(notes, "nothing", "", 5.0) == "there was no note 'nothing'"
    assert notes == [MemoryNote("city", "Paris", 2.0)]


def test_note_limits_change_nothing() -> None:
    notes = [MemoryNote(f"n{i}", "x", 0.0) for i in range(memory.MAX_NOTES)]
    before = [MemoryNote(n.name, n.content, n.updated_at) for n in notes]
    for name, content in (
        ("", "content"),
        ("   ", "content"),
        ("n" * (memory.MAX_NAME_CHARS + 1), "content"),
        ("n0", "c" * (memory.MAX_NOTE_CHARS + 1)),
        ("one_too_many", "content"),
    ):
        with pytest.raises(memory.NoteError):
            memory.write(notes, name, content, 9.0)
    assert notes == before
    # At the limit, a note can still be replaced, or deleted to make room.
    assert memory.write(notes, "n0", "c" * memory.MAX_NOTE_CHARS, 9.0) == "updated note 'n0'"
    assert memory.write(notes, "n" * memory.MAX_NAME_CHARS, "", 9.0).startswith("there was no")
    assert memory.write(notes, "n1", "", 9.0) == "deleted note 'n1'"
    assert memory.write(notes, "new", "fits now", 9.0) == "saved note 'new'"
    assert len(notes) == memory.MAX_NOTES


def call(arguments: str, name: str = memory.REMEMBER) -> ToolCall:
    return ToolCall(call_id="c1", name=name, arguments=arguments)


def test_the_remember_tool() -> None:
    notes: list[MemoryNote] = []
    saved = memory.apply(notes, call(json.dumps({"name": "plan", "content": "ship it"})), 1.0)
    assert saved == "saved note 'plan'" and notes == [MemoryNote("plan", "ship it", 1.0)]
    deleted = memory.apply(notes, call('{"name": "plan", "content": ""}'), 2.0)
    assert deleted == "deleted note 'plan'" and notes == []


@pytest.mark.parametrize(
    ("tool_call", "says"),
    [
        (call('{"name": "x", "content": '), "not valid JSON"),
        (call("not json at all"), "not valid JSON"),
        (call('["name", "content"]'), "JSON object"),
        (call('"just a string"'), "JSON object"),
        (call(""), "name must be"),
        (call('{"content": "no name"}'), "name must be"),
        (call(json.dumps({"name": "x", "content": "c" * 2001})), "limit is 2000"),
        (call('{"name": "x", "content": "y"}', name="search"), "unknown tool 'search'"),
    ],
)
def test_a_refused_tool_call_says_why(tool_call: ToolCall, says: str) -> None:
    notes = [MemoryNote("kept", "as it was", 0.0)]
    with pytest.raises(memory.NoteError) as raised:
        memory.apply(notes, tool_call, 1.0)
    assert says in str(raised.value)
    assert notes == [MemoryNote("kept", "as it was", 0.0)]


def test_notes_section() -> None:
    assert memory.notes_section([]) == ""
    section = memory.notes_section([MemoryNote("a", "one"), MemoryNote("b", "two")])
    assert section.splitlines()[1:] == ["- a: one", "- b: two"]
    assert memory.REMEMBER in section.splitlines()[0]


# --- wire messages ----------------------------------------------------------------------------


def event(kind: str, text: str = "", code: str = "", call_id: str = "") -> Event:
    return Event(
        seq=42, kind=kind, text=text, code=code, message_id="m-1", ts=1700000000.25, call_id=call_id
    )


@pytest.mark.parametrize(
    ("stored", "payload", "fields"),
    [
        (event(EventKind.USER_MESSAGE, "hi"), "user_message", {"content": "hi"}),
        (
            event(EventKind.STATUS, "model m", Notice.THINKING),
            "status",
            {"status": "thinking", "message": "model m"},
        ),
        (event(EventKind.TEXT, "tok"), "text", {"content": "tok"}),
        (event(EventKind.FINAL_ANSWER, "all of it"), "final_answer", {"content": "all of it"}),
        (
            event(EventKind.ERROR, "the endpoint is down", ErrorCode.http(503)),
            "error",
            {"code": "LLM_HTTP_503", "message": "the endpoint is down"},
        ),
        (
            event(EventKind.TOOL_CALL, '{"name": "a"}', "remember", "call_1"),
            "tool_call",
            {"tool_name": "remember", "input_json": '{"name": "a"}', "call_id": "call_1"},
        ),
        (
            event(EventKind.TOOL_RESULT, "saved note 'a'", "", "call_1"),
            "tool_result",
            {"call_id": "call_1", "output": "saved note 'a'", "is_error": False},
        ),
        (
            event(EventKind.TOOL_RESULT, "error: bad", TOOL_ERROR, "call_1"),
            "tool_result",
            {"call_id": "call_1", "output": "error: bad", "is_error": True},
        ),
        (
            event(EventKind.RESTART),
            "status",
            {"status": Notice.RESTARTING, "message": RESTART_NOTICE},
        ),
    ],
)
def test_every_event_kind_becomes_its_server_message(
    stored: Event, payload: str, fields: dict[str, Any]
) -> None:
    msg = to_server_message(AGENT, stored)
    assert (msg.agent_id, msg.sequence_id, msg.message_id) == (AGENT, 42, "m-1")
    # A float of seconds this far from 1970 holds about a quarter of a microsecond.
    assert msg.timestamp.seconds == 1700000000
    assert abs(msg.timestamp.nanos - 250_000_000) < 1_000
    assert msg.WhichOneof("payload") == payload
    body = getattr(msg, payload)
    for name, value in fields.items():
        assert getattr(body, name) == value, name
    if payload == "tool_result":
        assert body.error_message == (stored.text if body.is_error else "")
    assert ends_turn(msg) == (payload in ("final_answer", "error"))


def test_every_event_kind_is_covered() -> None:
    # The parametrized cases above name every kind: a new kind must be added there.
    for kind in EventKind:
        to_server_message(AGENT, event(kind))


def test_an_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown event kind"):
        to_server_message(AGENT, event("telepathy"))


@pytest.mark.parametrize(
    "piece",
    [
        StreamPiece(kind=EventKind.TEXT, text="tok "),
        StreamPiece(kind=EventKind.TEXT, text=""),
        StreamPiece(kind=EventKind.STATUS, text="another model answers", code="model_substituted"),
        StreamPiece(kind=EventKind.STATUS, text="resumed", code=Notice.RESUMED),
        StreamPiece(kind=EventKind.RESTART, text=""),
    ],
)
def test_a_streamed_piece_survives_the_relay(piece: StreamPiece) -> None:
    relayed = to_server_message(AGENT, event(piece.kind, piece.text, piece.code))
    # With the time it was published: the stored event is the message the client was shown.
    assert to_piece(relayed) == replace(piece, at=1700000000.25)


@pytest.mark.parametrize(
    "kind",
    [
        EventKind.USER_MESSAGE,
        EventKind.FINAL_ANSWER,
        EventKind.ERROR,
        EventKind.TOOL_CALL,
        EventKind.TOOL_RESULT,
    ],
)
def test_what_the_workflow_records_itself_is_no_piece(kind: EventKind) -> None:
    assert to_piece(to_server_message(AGENT, event(kind, "x", "c", "call"))) is None


def test_timestamps_keep_sub_second_precision() -> None:
    ts = timestamp(1.5)
    assert (ts.seconds, ts.nanos) == (1, 500_000_000)
    assert timestamp(0).seconds == 0 and timestamp(0).nanos == 0

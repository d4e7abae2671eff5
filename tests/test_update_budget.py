"""No number of followers or queued messages uses up an agent's update budget.

Temporal admits about 10 updates in flight per workflow. A turn waiting for a person's approval
may wait for days, and every client that follows it, or queues a message behind it, must not hold
an update of its own: the approval, a cancel and an edit must still get through.
"""

from __future__ import annotations

import time

import grpc
from google.protobuf.struct_pb2 import Struct
from temporalio.service import RPCError, RPCStatusCode

from engram.gateway.errors import from_temporal
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import Reader, chat_in_background, create_agent, finals, user_message
from tests.fake_llm import FakeLLM, note_taker
from tests.test_tool_use import approve, waiting_call

FOLLOWERS = 30
QUEUED = 12


class Follower(Reader):
    """A Replay of the agent's live turn, which its client may leave."""

    def __init__(self, stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> None:
        self.call = stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=90)
        super().__init__(self.call)

    def leave(self) -> None:
        self.call.cancel()


def follow(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> Follower:
    return Follower(stub, agent_id)


def test_followers_and_queued_messages_leave_room_for_approval_cancel_and_edit(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="deploy")])
    first = chat_in_background(stub, agent_id, 'call deploy {"service": "api"}')
    call = waiting_call(first)

    followers = [follow(stub, agent_id) for _ in range(FOLLOWERS)]
    # Half of them come, look and leave.
    time.sleep(1.0)
    for reader in followers[FOLLOWERS // 2 :]:
        reader.leave()
    queued = [
        Reader(stub.Chat(iter([user_message(agent_id, f"note {i}", f"q{i}")]), timeout=120))
        for i in range(QUEUED)
    ]
    time.sleep(1.0)

    goal = Struct()
    goal.update({"goal": "Deploy carefully."})
    edit = agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=agent_pb2.Edit(patch=goal))
    stub.ControlAgent(edit)
    approve(stub, agent_id, call_id=call.call_id, approved=True)

    assert first.done.wait(30) and first.status == grpc.StatusCode.OK, first.error
    assert finals(first.messages) == ["Done: deployed api: done."]
    for reader in followers[: FOLLOWERS // 2]:
        assert reader.done.wait(30) and reader.status == grpc.StatusCode.OK, reader.error
        # Replay follows everything the agent does: what came after the turn may follow it.
        assert "Done: deployed api: done." in finals(reader.messages)
        seqs = [m.sequence_id for m in reader.messages]
        assert seqs == sorted(set(seqs)), "a message was sent twice or out of order"
    for i, sender in enumerate(queued):
        assert sender.done.wait(60) and sender.status == grpc.StatusCode.OK, sender.error
        assert len(finals(sender.messages)) == 1, (i, sender.messages)

    # A cancel gets through too, with followers on a turn that waits again.
    second = chat_in_background(stub, agent_id, 'call deploy {"service": "db"}')
    waiting_call(second)
    more = [follow(stub, agent_id) for _ in range(FOLLOWERS)]
    time.sleep(1.0)
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, cancel=agent_pb2.Cancel()))
    assert second.done.wait(30) and second.status == grpc.StatusCode.OK, second.error
    for follower in more:
        assert follower.done.wait(30) and follower.status == grpc.StatusCode.OK, follower.error


def test_temporals_resource_exhausted_is_resource_exhausted_with_advice() -> None:
    err = RPCError("limit", RPCStatusCode.RESOURCE_EXHAUSTED, b"")
    refused = from_temporal(err, "a1")
    assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "try again in a moment" in refused.message

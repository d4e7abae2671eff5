"""Attachments reach the model (images as image parts, text inlined by name), are checked at the
edge, and never enter workflow history: their bytes are in the store, by content hash."""

from __future__ import annotations

import asyncio
import base64

import grpc
import pytest
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import create_agent, finals, history_text
from tests.engine import Engine
from tests.fake_llm import FakeLLM, text_of_content

# A real 1x1 PNG.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
QUERY = "SELECT name FROM users WHERE last_login < now() - interval '90 days';"


def send(
    stub: agent_pb2_grpc.AgentServiceStub,
    agent_id: str,
    content: str,
    *files: agent_pb2.Attachment,
) -> list[agent_pb2.ServerMessage]:
    message = agent_pb2.ClientMessage(
        agent_id=agent_id,
        user_input=agent_pb2.UserInput(content=content, attachments=list(files)),
    )
    return list(stub.Chat(iter([message]), timeout=60))


def test_images_and_text_files_reach_the_model(
    engine: Engine, stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    # The model answers with the first line it was sent, so nothing attached comes back in replies.
    llm.reply = lambda messages: "Seen: " + text_of_content(messages[-1]["content"]).split("\n")[0]
    agent_id = create_agent(stub)
    image = agent_pb2.Attachment(name="pixel.png", mime_type="image/png", data=PIXEL)
    sql = agent_pb2.Attachment(name="stale.sql", mime_type="application/sql", data=QUERY.encode())
    assert finals(send(stub, agent_id, "What do these show?", image, sql)) == [
        "Seen: What do these show?"
    ]
    sent = llm.requests_for("What do these show?")[-1]["messages"][-1]
    text, picture = sent["content"]
    inlined = f"Attached file stale.sql (application/sql):\n```\n{QUERY}\n```"
    assert text == {"type": "text", "text": f"What do these show?\n\n{inlined}"}
    assert picture == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + base64.b64encode(PIXEL).decode()},
    }
    # The attachment stays part of the conversation on the next turn.
    send(stub, agent_id, "And now?")
    earlier = llm.requests_for("And now?")[-1]["messages"][-3]
    assert earlier["role"] == "user" and earlier["content"][1] == picture
    # A message may be an attachment alone.
    assert finals(send(stub, agent_id, "", image)) == ["Seen: "]

    # Only references went into the agent's history.
    async def history() -> str:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        fetched = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).fetch_history()
        return history_text(fetched.to_json_dict())

    recorded = asyncio.run(history())
    assert "stale.sql" in recorded
    assert base64.b64encode(PIXEL).decode() not in recorded
    assert "last_login" not in recorded


def test_bad_attachments_are_refused(stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM) -> None:
    agent_id = create_agent(stub)
    cases = {
        "application/pdf": agent_pb2.Attachment(
            name="report.pdf", mime_type="application/pdf", data=b"%PDF-1.7"
        ),
        "not UTF-8": agent_pb2.Attachment(name="x.txt", mime_type="text/plain", data=b"\xff\xfe"),
        "not a image/png image": agent_pb2.Attachment(
            name="fake.png", mime_type="image/png", data=b"GIF89a..."
        ),
        "10485760": agent_pb2.Attachment(
            name="big.txt", mime_type="text/plain", data=b"x" * (10 * 1024 * 1024 + 1)
        ),
        "needs a name": agent_pb2.Attachment(name="", mime_type="text/plain", data=b"x"),
    }
    for expected, attachment in cases.items():
        with pytest.raises(grpc.RpcError) as refused:
            send(stub, agent_id, "see attached", attachment)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, expected
        assert expected in str(refused.value.details()), refused.value.details()
    assert not llm.requests_for("see attached")

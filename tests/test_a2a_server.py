"""Each agent as an A2A server, against a real engine: the a2a-sdk's own client reads an agent's
card and completes tasks with SendMessage and SendStreamingMessage, answers an approval on an
input-required task, reads finished tasks back; other tenants, unknown agents and bad keys are
refused, and the README's example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.client import Client
from a2a.types import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Value

from tests.fake_llm import FakeLLM, note_taker
from tests.http_api import Tenants, client, tenants_engine

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def tenants(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    started = tenants_engine(tmp_path_factory.mktemp("a2a-engine"), fake_llm.url)
    yield started
    started.engine.stop()


def root(tenants: Tenants) -> str:
    return tenants.url.removesuffix("/v1")


def new_agent(tenants: Tenants, key: str, **fields: Any) -> str:
    with client(tenants.url, key) as http:
        body = {"goal": "Keep the billing service healthy.", "model": "fake-model", **fields}
        reply = http.post("/agents", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["agent_id"])


async def a2a_client(tenants: Tenants, agent_id: str, streaming: bool) -> Client:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {tenants.acme}"}, timeout=60)
    factory = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming))
    return await factory.create_from_url(f"{root(tenants)}/a2a/{agent_id}")


def user(text: str = "", data: dict[str, Any] | None = None, task: Task | None = None) -> Message:
    message = Message(message_id=uuid.uuid4().hex, role=Role.ROLE_USER)
    if text:
        message.parts.append(Part(text=text))
    if data is not None:
        message.parts.append(Part(data=ParseDict(data, Value())))
    if task is not None:
        message.task_id, message.context_id = task.id, task.context_id
    return message


async def sent(a2a: Client, message: Message) -> list[StreamResponse]:
    events: AsyncIterator[StreamResponse] = a2a.send_message(SendMessageRequest(message=message))
    return [event async for event in events]


def reply_of(task: Task) -> str:
    return "".join(p.text for a in task.artifacts for p in a.parts)


def streamed_text(events: list[StreamResponse]) -> str:
    text = ""
    for event in events:
        if event.HasField("artifact_update"):
            update = event.artifact_update
            chunk = "".join(p.text for p in update.artifact.parts)
            text = text + chunk if update.append else chunk
    return text


def last_status(events: list[StreamResponse]) -> Any:
    statuses = [e.status_update.status for e in events if e.HasField("status_update")]
    return statuses[-1]


async def test_the_sdk_client_reads_the_card_and_completes_tasks(
    tenants: Tenants, llm: FakeLLM
) -> None:
    llm.token_delay = 0.005
    agent_id = new_agent(tenants, tenants.acme)
    a2a = await a2a_client(tenants, agent_id, streaming=False)
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {tenants.acme}"})
    card = await A2ACardResolver(http, f"{root(tenants)}/a2a/{agent_id}").get_agent_card()
    assert card.description == "Keep the billing service healthy."
    assert card.capabilities.streaming and card.skills[0].id == "chat"
    assert card.supported_interfaces[0].url == f"{root(tenants)}/a2a/{agent_id}"

    (whole,) = await sent(a2a, user("The 'orders' table is slow."))
    task = whole.task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert reply_of(task) == "You said: The 'orders' table is slow."
    assert task.context_id == agent_id and task.id.startswith(f"task_{agent_id}_")

    streaming = await a2a_client(tenants, agent_id, streaming=True)
    events = await sent(streaming, user("What table were we talking about?"))
    assert events[0].HasField("task")
    chunks = [e for e in events if e.HasField("artifact_update")]
    assert len(chunks) > 2, "the reply streams in pieces"
    assert streamed_text(events) == "We were talking about the 'orders' table."
    assert last_status(events).state == TaskState.TASK_STATE_COMPLETED

    # Both tasks read back from the agent's record.
    for done, text in ((task, reply_of(task)), (events[0].task, streamed_text(events))):
        again = await a2a.get_task(GetTaskRequest(id=done.id))
        assert again.status.state == TaskState.TASK_STATE_COMPLETED
        assert reply_of(again) == text
        assert again.history[0].parts[0].text in (
            "The 'orders' table is slow.",
            "What table were we talking about?",
        )


async def test_an_approval_is_an_input_required_round_trip(tenants: Tenants, llm: FakeLLM) -> None:
    llm.reply = note_taker
    agent_id = new_agent(tenants, tenants.acme, tools=[{"name": "deploy"}])
    a2a = await a2a_client(tenants, agent_id, streaming=True)

    events = await sent(a2a, user('call deploy {"service": "api"}'))
    asking = last_status(events)
    assert asking.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert "deploy" in asking.message.parts[0].text
    (pending,) = MessageToDict(asking.message.parts[1].data)["pending_calls"]
    assert pending["tool_name"] == "deploy" and pending["arguments"] == {"service": "api"}
    task = events[0].task
    read = await a2a.get_task(GetTaskRequest(id=task.id))
    assert read.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

    # An answer that is neither approve nor deny is refused, and changes nothing.
    with pytest.raises(Exception, match="approve"):
        await sent(a2a, user("maybe later", task=task))
    approved = await sent(a2a, user("approve", task=task))
    assert last_status(approved).state == TaskState.TASK_STATE_COMPLETED
    assert streamed_text(approved) == "Done: deployed api: done."
    done = await a2a.get_task(GetTaskRequest(id=task.id))
    assert reply_of(done) == "Done: deployed api: done."
    with pytest.raises(Exception, match="has ended"):
        await sent(a2a, user("approve", task=task))

    # Denied with a data part, without streaming.
    plain = await a2a_client(tenants, agent_id, streaming=False)
    (first,) = await sent(plain, user('call deploy {"service": "web"}'))
    assert first.task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    (answer,) = await sent(
        plain, user(data={"approve": False, "reason": "not today"}, task=first.task)
    )
    assert answer.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert "not today" in reply_of(answer.task)
    assert answer.task.id == first.task.id


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def assert_refused(reply: httpx2.Response, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    return str(reply.json()["error"]["message"])


def test_other_tenants_unknown_agents_and_bad_keys_are_refused(tenants: Tenants) -> None:
    agent_id = new_agent(tenants, tenants.acme)
    missing = str(uuid.uuid4())
    send = rpc(
        "message/send",
        {"message": {"messageId": "m1", "role": "user", "parts": [{"kind": "text", "text": "hi"}]}},
    )
    with client(root(tenants), tenants.acme) as acme:
        task_id = acme.post(f"/a2a/{agent_id}", json=send).json()["result"]["id"]
    with client(root(tenants), tenants.globex) as globex:
        for path, body in ((".well-known/agent-card.json", None), ("", send)):
            method = "GET" if body is None else "POST"
            theirs = globex.request(method, f"/a2a/{agent_id}/{path}".rstrip("/"), json=body)
            nobodys = globex.request(method, f"/a2a/{missing}/{path}".rstrip("/"), json=body)
            seen, unknown = assert_refused(theirs, 404), assert_refused(nobodys, 404)
            assert seen.replace(agent_id, missing) == unknown, path
        # Its own agent cannot read another's task: not found, as a made-up one.
        own = new_agent(tenants, tenants.globex)
        for bad in (task_id, task_id.replace(agent_id, own), "task_garbage"):
            reply = globex.post(f"/a2a/{own}", json=rpc("tasks/get", {"id": bad}))
            error = reply.json()["error"]
            assert error["code"] == -32001 and "not found" in error["message"], reply.text
    for key in (None, "engram_bad_key"):
        with client(root(tenants), key) as anonymous:
            assert_refused(anonymous.get(f"/a2a/{agent_id}/.well-known/agent-card.json"), 401)
            assert_refused(anonymous.post(f"/a2a/{agent_id}", json=send), 401)
    with client(root(tenants), tenants.acme) as acme:
        # Malformed requests are JSON-RPC errors, never stack traces.
        for raw, code in (
            (b"{not json", -32700),
            (b'{"jsonrpc": "2.0", "id": 1, "method": "no/such"}', -32601),
            (
                b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {'
                b'"messageId": "m", "role": "user", "parts": [{"kind": "text", "text": " "}]}}}',
                -32602,
            ),
        ):
            reply = acme.post(f"/a2a/{agent_id}", content=raw)
            assert reply.json()["error"]["code"] == code, reply.text
            assert "Traceback" not in reply.text
        assert_refused(acme.get("/a2a/not-an-agent/.well-known/agent-card.json"), 400)
    # The server logged no stack trace for any of these client errors.
    assert "Traceback" not in tenants.engine.log_path.read_text(errors="replace")


def readme_blocks(language: str) -> list[str]:
    text = README.read_text()
    section = text[text.index("### A2A server\n") :]
    section = re.split(r"\n##+ ", section[4:])[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def test_the_readme_example_runs_as_written(tenants: Tenants, llm: FakeLLM) -> None:
    (shell,) = readme_blocks("bash")
    (python,) = readme_blocks("python")
    port = str(tenants.engine.http_port)
    env = {**os.environ, "ENGRAM_API_KEY": tenants.acme}
    done = subprocess.run(
        ["bash", "-euc", shell.replace("8080", port) + 'echo "AGENT_ID=$AGENT_ID"\n'],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert '"description":"Help with Postgres."' in done.stdout
    assert "You said: Hello" in done.stdout
    agent_id = done.stdout.rsplit("AGENT_ID=", 1)[1].strip()
    done = subprocess.run(
        [sys.executable, "-c", python.replace("8080", port)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "AGENT_ID": agent_id},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "You said: We are seeing slow joins on the 'users' table.",
        "completed: You said: We are seeing slow joins on the 'users' table.",
    ]

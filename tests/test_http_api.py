"""The HTTP API against a real engine: OpenAI's own client streams turns through Chat
Completions and Responses (one agent remembering across both), Engram's resources as JSON, every
route closed to other tenants and to bad input, and a stream resumed with Last-Event-ID after its
server was SIGKILLed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openai import OpenAI

from engram.auth import keys
from tests.conftest import eventually
from tests.fake_llm import FakeLLM, note_taker
from tests.http_api import HttpProcess, SseEvent, Tenants, client, sse_events, tenants_engine
from tests.test_auth import create_key, engram_cli

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def tenants(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    started = tenants_engine(tmp_path_factory.mktemp("http-engine"), fake_llm.url)
    yield started
    started.engine.stop()


def new_agent(url: str, key: str, **fields: Any) -> str:
    with client(url, key) as http:
        reply = http.post("/agents", json={"goal": "Help.", "model": "fake-model", **fields})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["agent_id"])


def test_openai_client_streams_both_apis_and_the_agent_remembers(
    tenants: Tenants, llm: FakeLLM
) -> None:
    agent_id = new_agent(tenants.url, tenants.acme)
    openai = OpenAI(base_url=tenants.url, api_key=tenants.acme)
    model = f"agent:{agent_id}"
    assert model in [m.id for m in openai.models.list()]
    assert openai.models.retrieve(model).id == model

    chunks = list(
        openai.chat.completions.create(
            model=model,
            stream=True,
            messages=[
                {"role": "system", "content": "ignored: the agent has its own"},
                {"role": "user", "content": "The 'orders' table is slow."},
            ],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "You said: The 'orders' table is slow."
    assert chunks[-1].choices[0].finish_reason == "stop"

    events = list(
        openai.responses.create(model=model, input="What table were we talking about?", stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response  # type: ignore[union-attr]
    assert done.output_text == "We were talking about the 'orders' table."
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == done.output_text

    # previous_response_id names the agent; a plain request answers whole.
    again = openai.responses.create(previous_response_id=done.id, input="What table?")
    assert again.status == "completed" and again.output_text == done.output_text
    completion = openai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "what table was it?"}]
    )
    assert completion.choices[0].message.content == "We were talking about the 'orders' table."
    # A response reads back whole, and its stream replays from the durable record.
    assert openai.responses.retrieve(done.id).output_text == done.output_text
    tail = list(openai.responses.retrieve(done.id, stream=True, starting_after=3))
    assert [e.sequence_number for e in tail] == list(range(4, len(events)))

    with client(tenants.url, tenants.acme) as http:
        history = http.get(f"/agents/{agent_id}/history").json()["turns"]
    assert [t["user"] for t in history] == [
        "The 'orders' table is slow.",
        "What table were we talking about?",
        "What table?",
        "what table was it?",
    ]


def test_resources_mirror_the_agent_service(tenants: Tenants, llm: FakeLLM) -> None:
    llm.reply = note_taker
    agent_id = new_agent(tenants.url, tenants.acme, tools=[{"name": "deploy"}])
    with client(tenants.url, tenants.acme) as http:
        assert http.get(f"/agents/{agent_id}").json()["status"] == "idle"
        listed = [a["agent_id"] for a in http.get("/agents").json()["agents"]]
        assert agent_id in listed

        answer: dict[str, Any] = {}

        def send() -> None:
            with client(tenants.url, tenants.acme) as other:
                reply = other.post(
                    f"/agents/{agent_id}/messages",
                    json={"content": 'call deploy {"service": "api"}'},
                )
                answer.update(reply.json())

        sender = threading.Thread(target=send)
        sender.start()
        waiting: list[dict[str, Any]] = []

        def asked() -> bool:
            waiting[:] = http.get(f"/agents/{agent_id}/approvals").json()["data"]
            return bool(waiting)

        eventually(asked, 30, "a call awaiting approval")
        assert waiting[0]["tool_name"] == "deploy"
        decided = http.post(
            f"/agents/{agent_id}/approvals/{waiting[0]['call_id']}/approve",
            json={"decided_by": "ops"},
        )
        assert decided.status_code == 200, decided.text
        sender.join(30)
        finals = [m["final_answer"]["content"] for m in answer["messages"] if "final_answer" in m]
        assert finals == ["Done: deployed api: done."]

        # Replay as server-sent events, each id its sequence id; Last-Event-ID resumes.
        with http.stream("GET", f"/agents/{agent_id}/events?include_history=true") as stream:
            replayed = list(sse_events(stream.iter_lines()))
        seqs = [int(e.event_id or 0) for e in replayed]
        assert seqs == list(range(1, len(seqs) + 1)) and replayed[-1].event == "final_answer"
        with http.stream(
            "GET", f"/agents/{agent_id}/events", headers={"Last-Event-ID": str(seqs[-3])}
        ) as stream:
            assert [e.data for e in sse_events(stream.iter_lines())] == [
                e.data for e in replayed[-2:]
            ]

        assert http.post(f"/agents/{agent_id}/pause").json() == {"status": "paused"}
        assert http.post(f"/agents/{agent_id}/resume").json()["status"] == "idle"
        assert http.post(f"/agents/{agent_id}/cancel").status_code == 200
        forked = http.post(f"/agents/{agent_id}/fork", json={"at_sequence": seqs[-1]})
        assert forked.status_code == 201, forked.text
        fork_id = forked.json()["agent_id"]
        assert http.get(f"/agents/{fork_id}").json()["forked_from"] == agent_id
        for gone in (fork_id, agent_id):
            assert http.delete(f"/agents/{gone}").json() == {"agent_id": gone, "deleted": True}
        eventually(lambda: http.get(f"/agents/{agent_id}").json()["status"] == "deleted")
    spec = httpx2.get(tenants.url.removesuffix("/v1") + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/responses", "/v1/agents/{agent_id}/fork"} <= set(
        spec["paths"]
    )


def routes(agent_id: str, response_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route that names an agent: (method, path, JSON body)."""
    model = f"agent:{agent_id}"
    chat = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    answer = {"model": model, "input": "hi"}
    base = f"/agents/{agent_id}"
    return [
        ("GET", base, None),
        ("GET", f"{base}/history", None),
        ("GET", f"{base}/approvals", None),
        ("GET", f"{base}/events", None),
        ("POST", f"{base}/messages", {"content": "hi"}),
        ("POST", f"{base}/approvals/call-1/approve", {}),
        ("POST", f"{base}/approvals/call-1/deny", {"reason": "no"}),
        ("POST", f"{base}/pause", None),
        ("POST", f"{base}/resume", None),
        ("POST", f"{base}/cancel", None),
        ("POST", f"{base}/fork", {"at_sequence": 0}),
        ("POST", f"{base}/rewind", {"to_sequence": 0}),
        ("POST", f"{base}/retry", None),
        ("GET", f"{base}/search?q=hi", None),
        ("DELETE", base, None),
        ("GET", f"/models/{model}", None),
        ("POST", "/chat/completions", chat),
        ("POST", "/chat/completions", {**chat, "stream": True}),
        ("POST", "/responses", answer),
        ("POST", "/responses", {**answer, "stream": True}),
        ("POST", "/responses", {"previous_response_id": response_id, "input": "hi"}),
        ("GET", f"/responses/{response_id}", None),
        ("GET", f"/responses/{response_id}?stream=true", None),
    ]


def assert_error(reply: httpx2.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, (reply.request.url, reply.text)
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["message"], error
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    return dict(error)


def test_other_tenants_agents_are_not_found_on_every_route(tenants: Tenants) -> None:
    agent_id = new_agent(tenants.url, tenants.acme)
    openai = OpenAI(base_url=tenants.url, api_key=tenants.acme)
    response_id = openai.responses.create(model=f"agent:{agent_id}", input="hello").id
    missing = str(uuid.uuid4())
    missing_response = response_id.replace(agent_id, missing)
    with client(tenants.url, tenants.globex) as globex:
        theirs = routes(agent_id, response_id)
        nobodys = routes(missing, missing_response)
        for (method, path, body), (_, missing_path, missing_body) in zip(
            theirs, nobodys, strict=True
        ):
            seen = assert_error(globex.request(method, path, json=body), 404)
            unknown = assert_error(globex.request(method, missing_path, json=missing_body), 404)
            # Word for word what a missing agent gets: nothing tells the two apart.
            assert seen["message"].replace(agent_id, missing) == unknown["message"], path
            assert (seen["type"], seen["code"]) == (unknown["type"], unknown["code"]), path
        assert agent_id not in globex.get("/agents").text
        assert agent_id not in globex.get("/models").text
    with client(tenants.url, tenants.acme) as acme:
        # The agent is untouched (the globex DELETE was refused).
        assert acme.get(f"/agents/{agent_id}").json()["status"] == "idle"


def test_bad_input_on_every_route(tenants: Tenants) -> None:
    agent_id = new_agent(tenants.url, tenants.acme)
    openai = OpenAI(base_url=tenants.url, api_key=tenants.acme)
    response_id = openai.responses.create(model=f"agent:{agent_id}", input="hello").id
    every = [*routes(agent_id, response_id), ("GET", "/agents", None), ("GET", "/models", None)]
    every.append(("POST", "/agents", {"goal": "x", "model": "fake-model"}))
    with client(tenants.url, None) as anonymous, client(tenants.url, "engram_bad_key") as wrong:
        for method, path, body in every:
            assert assert_error(anonymous.request(method, path, json=body), 401)["type"] == (
                "authentication_error"
            )
            assert_error(wrong.request(method, path, json=body), 401)
    with client(tenants.url, tenants.acme) as http:
        # A malformed agent id is invalid; a made-up response id names no response.
        for method, path, body in routes("not-an-agent", "resp_garbage"):
            names_response = "resp_garbage" in path or "resp_garbage" in str(body)
            assert_error(http.request(method, path, json=body), 404 if names_response else 400)
        for method, path, body in every:
            if method == "POST" and body is not None:
                reply = http.post(
                    path, content=b"{not json", headers={"Content-Type": "application/json"}
                )
                assert_error(reply, 400)
        model = f"agent:{agent_id}"
        bad_bodies = [
            (
                "/chat/completions",
                {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
            ),
            ("/chat/completions", {"model": model, "messages": []}),
            ("/chat/completions", {"model": model}),
            (
                "/chat/completions",
                {"model": model, "messages": [{"role": "assistant", "content": "x"}]},
            ),
            (
                "/chat/completions",
                {
                    "model": model,
                    "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
                },
            ),
            (
                "/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": "  "}]},
            ),
            ("/responses", {"model": model}),
            ("/responses", {"input": "hi"}),
            ("/responses", {"model": model, "input": []}),
            ("/responses", {"model": model, "input": [{"role": "assistant", "content": "x"}]}),
            (
                "/responses",
                {
                    "model": f"agent:{uuid.uuid4()}",
                    "previous_response_id": response_id,
                    "input": "x",
                },
            ),
            ("/agents", {"goal": "x", "model": "fake-model", "unknown_field": 1}),
            ("/agents", {"goal": "x", "model": "fake-model", "config": {"temperature": 9}}),
            ("/agents", ["not", "an", "object"]),
            (f"/agents/{agent_id}/messages", {"content": 5}),
            (f"/agents/{agent_id}/messages", {}),
            (f"/agents/{agent_id}/messages", {"content": "x", "attachments": [{"data": "%%"}]}),
            (
                f"/agents/{agent_id}/messages",
                {
                    "attachments": [
                        {"name": "a.zip", "mime_type": "application/zip", "data": "UEs="}
                    ]
                },
            ),
            (f"/agents/{agent_id}/fork", {"at_sequence": "soon"}),
            (f"/agents/{agent_id}/approvals/call-1/maybe", {}),
        ]
        for path, bad in bad_bodies:
            assert_error(http.post(path, json=bad), 400)
        assert_error(http.get(f"/agents/{agent_id}/events", headers={"Last-Event-ID": "x"}), 400)
        assert_error(
            http.get(f"/responses/{response_id}?stream=true", headers={"Last-Event-ID": "1.x"}), 400
        )
        assert_error(http.get("/agents?page_size=-1"), 400)
        assert_error(http.get("/agents?status=sleepy"), 400)
        assert_error(http.get("/no/such/route"), 404)

        # Oversized: refused on the declared length, before the body is read (none is sent).
        for path in (
            "/agents",
            "/chat/completions",
            "/responses",
            f"/agents/{agent_id}/fork",
            f"/agents/{agent_id}/messages",
        ):
            status, text = declared_only(tenants.url + path, tenants.acme, 64 * 1024 * 1024)
            assert status == 413 and '"body_too_large"' in text, (path, status, text)

        # ...and, sent without a length (chunked), once it passes the limit.
        def chunks() -> Iterator[bytes]:
            yield b'{"goal": "'
            for _ in range(2048):
                yield b"x" * 1024
            yield b'"}'

        reply = http.post("/agents", content=chunks(), headers={"Content-Type": "application/json"})
        assert_error(reply, 413)


def declared_only(url: str, key: str, length: int) -> tuple[int, str]:
    """POST with a Content-Length of `length` and no body at all: the status and body."""
    parsed = httpx2.URL(url)
    with socket.create_connection((parsed.host, parsed.port or 80), timeout=10) as conn:
        conn.sendall(
            f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def test_rate_limit_is_429(tenants: Tenants) -> None:
    server = HttpProcess(tenants.engine, None, "--rate-limit", "1", "--rate-burst", "3").start()
    try:
        with client(server.url, tenants.acme) as http:
            replies = [http.get("/models") for _ in range(6)]
        assert [r.status_code for r in replies[:3]] == [200, 200, 200]
        limited = [r for r in replies if r.status_code == 429]
        assert limited, [r.status_code for r in replies]
        assert assert_error(limited[0], 429)["type"] == "rate_limit_error"
        assert limited[0].headers["x-should-retry"] == "true"
    finally:
        server.stop()


@pytest.mark.chaos
def test_a_stream_resumes_exactly_once_after_its_server_is_killed(
    tenants: Tenants, llm: FakeLLM
) -> None:
    reply = "Here it comes: " + "".join(f"w{i} " for i in range(120))
    llm.reply, llm.token_delay = (lambda messages: reply), 0.03
    first = HttpProcess(tenants.engine).start()
    second: HttpProcess | None = None
    try:
        agent_id = new_agent(first.url, tenants.acme)
        got: list[SseEvent] = []
        with client(first.url, tenants.acme) as http, pytest.raises(httpx2.HTTPError):
            body = {"model": f"agent:{agent_id}", "input": "talk", "stream": True}
            with http.stream("POST", "/responses", json=body) as stream:
                for event in sse_events(stream.iter_lines()):
                    got.append(event)
                    deltas = [e for e in got if e.event == "response.output_text.delta"]
                    if len(deltas) == 5:
                        first.kill()  # mid-turn, mid-stream
        assert got[-1].event != "response.completed"
        response_id = got[0].json()["response"]["id"]

        second = HttpProcess(tenants.engine, first.http_port).start()
        with client(second.url, tenants.acme) as http:
            resume = {"Last-Event-ID": str(got[-1].event_id)}
            path = f"/responses/{response_id}?stream=true"
            with http.stream("GET", path, headers=resume) as stream:
                rest = list(sse_events(stream.iter_lines()))
            with http.stream("GET", path) as stream:
                whole = list(sse_events(stream.iter_lines()))
        events = got + rest
        assert [e.json()["sequence_number"] for e in events] == list(range(len(events)))
        assert [(e.event_id, e.data) for e in events] == [(e.event_id, e.data) for e in whole]
        assert events[-1].event == "response.completed"
        text = "".join(e.json()["delta"] for e in events if e.event == "response.output_text.delta")
        assert text == reply
        assert events[-1].json()["response"]["output"][0]["content"][0]["text"] == reply
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()


def readme_blocks(language: str) -> list[str]:
    text = README.read_text()
    # The section's own examples come before its subsections (MCP, A2A, the console).
    section = re.split(r"\n##+ ", text[text.index("## HTTP API\n") :])[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def test_the_readme_examples_run_as_written(tenants: Tenants, llm: FakeLLM) -> None:
    llm.token_delay = 0.01
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
    assert '"content":"You said: Hello"' in done.stdout
    assert "event: response.completed" in done.stdout
    assert "You said: Hello again" in done.stdout
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
        "We were talking about the 'users' table.",
    ]


def test_a_revoked_key_ends_its_open_stream(tenants: Tenants, llm: FakeLLM) -> None:
    llm.reply, llm.token_delay = (lambda messages: "slow " * 400), 0.02
    data_dir = tenants.engine.data_dir
    key = create_key(data_dir, "acme")
    agent_id = new_agent(tenants.url, key)
    events: list[SseEvent] = []
    with client(tenants.url, key) as http:
        body = {"model": f"agent:{agent_id}", "input": "talk", "stream": True}
        with http.stream("POST", "/responses", json=body) as stream:
            for event in sse_events(stream.iter_lines()):
                events.append(event)
                if event.event == "response.output_text.delta" and len(events) == 6:
                    key_id = keys.parse(key)
                    assert key_id is not None
                    done = engram_cli("keys", "revoke", key_id[0], "--data-dir", str(data_dir))
                    assert done.returncode == 0, done.stderr
                    revoked_at = time.monotonic()
    assert time.monotonic() - revoked_at < 5, "the stream ended within 5 s of the revocation"
    assert events[-1].event == "error" and "revoked" in events[-1].json()["message"]
    assert_error(client(tenants.url, key).get("/models"), 401)
    with client(tenants.url, tenants.acme) as http:  # the turn itself goes on: end it
        assert http.post(f"/agents/{agent_id}/cancel").status_code == 200

"""The MCP server at /mcp against a real engine, through the official `mcp` client: tools listed,
an agent created and asked (its reply streamed as progress notifications), an approval round
trip, other tenants' agents not found, keys required, and the README's example run as written."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from tests.conftest import eventually
from tests.fake_llm import FakeLLM, note_taker
from tests.http_api import Tenants, client, tenants_engine

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def tenants(fake_llm: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    started = tenants_engine(tmp_path_factory.mktemp("mcp-engine"), fake_llm.url)
    yield started
    started.engine.stop()


def mcp_url(tenants: Tenants) -> str:
    return tenants.url.removesuffix("/v1") + "/mcp"


@asynccontextmanager
async def session(tenants: Tenants, key: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(mcp_url(tenants), http_client=http) as (read, write),
        ClientSession(read, write) as opened,
    ):
        await opened.initialize()
        yield opened


def text(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


def test_a_client_lists_creates_and_asks_with_the_reply_streamed(
    tenants: Tenants, llm: FakeLLM
) -> None:
    llm.token_delay = 0.01
    updates: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, message))

    async def run() -> None:
        async with session(tenants, tenants.acme) as mcp:
            tools = {t.name for t in (await mcp.list_tools()).tools}
            assert tools == {"list_agents", "create_agent", "ask_agent", "approve"}
            created = await mcp.call_tool("create_agent", {"goal": "Help.", "model": "fake"})
            assert not created.is_error, text(created)
            agent_id = json.loads(text(created))["agent_id"]
            listed = await mcp.call_tool("list_agents", {})
            assert agent_id in text(listed)

            asked = await mcp.call_tool(
                "ask_agent",
                {"agent_id": agent_id, "message": "The orders table is slow."},
                progress_callback=on_progress,
            )
            assert not asked.is_error, text(asked)
            assert text(asked) == "You said: The orders table is slow."

    asyncio.run(run())
    # The reply arrived in pieces, each notification carrying the text added since the last.
    assert len(updates) > 1
    assert "".join(m or "" for _, m in updates) == "You said: The orders table is slow."
    assert [p for p, _ in updates] == sorted(p for p, _ in updates)


def test_a_turn_waiting_for_approval_returns_and_approve_lets_it_finish(
    tenants: Tenants, llm: FakeLLM
) -> None:
    llm.reply = note_taker

    async def run() -> str:
        async with session(tenants, tenants.acme) as mcp:
            created = await mcp.call_tool(
                "create_agent", {"goal": "Ship.", "model": "fake", "tools": ["deploy"]}
            )
            agent_id = json.loads(text(created))["agent_id"]
            asked = await mcp.call_tool(
                "ask_agent", {"agent_id": agent_id, "message": 'call deploy {"service": "api"}'}
            )
            assert not asked.is_error, text(asked)
            said = text(asked)
            assert "waits for approval" in said
            (waiting,) = json.loads(said[said.index("[") :])
            assert waiting["tool_name"] == "deploy"
            assert json.loads(waiting["arguments"]) == {"service": "api"}
            decided = await mcp.call_tool(
                "approve", {"agent_id": agent_id, "call_id": waiting["call_id"], "approved": True}
            )
            assert not decided.is_error, text(decided)
            return str(agent_id)

    agent_id = asyncio.run(run())
    with client(tenants.url, tenants.acme) as http:

        def answered() -> bool:
            turns = http.get(f"/agents/{agent_id}/history").json().get("turns", [])
            return bool(turns) and turns[-1].get("reply") == "Done: deployed api: done."

        eventually(answered, 30, "the approved turn's answer")


def test_other_tenants_agents_are_not_found_and_keys_are_required(tenants: Tenants) -> None:
    async def run() -> None:
        async with session(tenants, tenants.acme) as acme:
            created = await acme.call_tool("create_agent", {"goal": "Mine.", "model": "fake"})
            mine = json.loads(text(created))["agent_id"]
        missing = str(uuid.uuid4())
        async with session(tenants, tenants.globex) as globex:
            assert mine not in text(await globex.call_tool("list_agents", {}))
            calls: list[tuple[str, dict[str, Any]]] = [
                ("ask_agent", {"message": "hi"}),
                ("approve", {"call_id": "call-1", "approved": False}),
            ]
            for name, arguments in calls:
                seen = await globex.call_tool(name, {"agent_id": mine, **arguments})
                unknown = await globex.call_tool(name, {"agent_id": missing, **arguments})
                assert seen.is_error and unknown.is_error
                # Word for word what a missing agent gets: nothing tells the two apart.
                assert "not found" in text(unknown) and "Traceback" not in text(seen)
                assert text(seen).replace(mine, missing) == text(unknown), name

    asyncio.run(run())
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    for key in (None, "not-a-key"):
        with client(tenants.url.removesuffix("/v1"), key) as http:
            refused = http.post("/mcp", json=initialize, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["type"] == "authentication_error"
    # On loopback, a page served from another name (DNS rebinding) is refused even with a key.
    with client(tenants.url.removesuffix("/v1"), tenants.acme) as http:
        rebound = http.post("/mcp", json=initialize, headers={**headers, "Host": "evil.test"})
    assert rebound.status_code == 421, rebound.text


def test_the_readme_example_runs_as_written(tenants: Tenants, llm: FakeLLM) -> None:
    text = README.read_text()
    section = text[text.index("### MCP server\n") :]
    section = re.split(r"\n##+ ", section[4:])[0]
    (python,) = re.findall(r"```python\n(.*?)```", section, re.S)
    port = str(tenants.engine.http_port)
    done = subprocess.run(
        [sys.executable, "-c", python.replace("8080", port)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ENGRAM_API_KEY": tenants.acme},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "You said: Hello"

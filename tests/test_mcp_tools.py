"""MCP servers' tools, end to end: a real MCP server (tests/mcp_server.py, the SDK's server) over
streamable HTTP and over stdio, named by `--mcp` on the engine, called by an agent."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from engram.v1 import agent_pb2
from tests.conftest import chat, create_agent, finals
from tests.engine import Engine, free_port
from tests.fake_llm import FakeLLM, note_taker
from tests.test_tool_use import notices, of_kind

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def start_http_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, SERVER, "--transport", "http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "MCP server start"
            time.sleep(0.1)


def test_mcp_tools_over_http_and_stdio(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = note_taker
    port = free_port()
    http_server = start_http_server(port)
    engine = Engine(
        tmp_path / "data",
        llm.url,
        ENGRAM_MCP=f"calc=http://127.0.0.1:{port}/mcp;local={sys.executable} {SERVER}",
    ).start()
    try:
        stub = engine.stub()
        listed = {t.name: t for t in stub.ListTools(agent_pb2.ListToolsRequest()).tools}
        assert {"calc__add", "local__add", "local__record"} <= set(listed)
        assert listed["calc__add"].kind == "mcp"

        agent_id = create_agent(
            stub, tools=[agent_pb2.Tool(name="calc__add"), agent_pb2.Tool(name="local__add")]
        )
        over_http = chat(stub, agent_id, 'call calc__add {"a": 1.5, "b": 2}')
        assert finals(over_http) == ["Done: 3.5."]
        over_stdio = chat(stub, agent_id, 'call local__add {"a": 40, "b": 2}')
        assert finals(over_stdio) == ["Done: 42.0."]

        # The server goes away: the model is told, the client gets a notice, the turn ends.
        http_server.kill()
        http_server.wait()
        started = time.monotonic()
        gone = chat(stub, agent_id, 'call calc__add {"a": 1, "b": 1}')
        assert time.monotonic() - started < 45
        result = of_kind(gone, "tool_result")[0].tool_result
        assert result.is_error and "calc" in result.output
        assert "tool_unavailable" in notices(gone)
        assert finals(gone) and finals(gone)[0].startswith("Done: ")
        # And the agent goes on.
        assert finals(chat(stub, agent_id, 'call local__add {"a": 1, "b": 1}')) == ["Done: 2.0."]

        with pytest.raises(grpc.RpcError) as refused:
            create_agent(stub, tools=[agent_pb2.Tool(name="nowhere__add")])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "calc__add" in str(refused.value.details())
        assert json.loads(of_kind(over_http, "tool_call")[0].tool_call.input_json)["a"] == 1.5
    finally:
        engine.stop()
        if http_server.poll() is None:
            http_server.kill()

"""The README's client example, run as written in fresh processes, with both client packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import DEFAULT_PORT
from tests.engine import Engine
from tests.fake_llm import FakeLLM

EXAMPLE = """
import grpc
from engram.v1 import agent_pb2, agent_pb2_grpc

channel = grpc.insecure_channel('localhost:50051')
stub = agent_pb2_grpc.AgentServiceStub(channel)
resp = stub.CreateAgent(agent_pb2.CreateAgentRequest(
    goal="Optimize the backend database queries.",
    model="llama3.1:70b",
    system_prompt="You are a senior DBA using Postgres..."
))
agent_id = resp.agent_id
user_msg = agent_pb2.ClientMessage(
    agent_id=agent_id,
    user_input=agent_pb2.UserInput(content="We are seeing slow joins on the 'users' table.")
)
for msg in stub.Chat(iter([user_msg])):
    if msg.HasField('text'):
        print(f"Agent: {msg.text.content}")
"""

# "Tomorrow", from a new process that knows only the agent id.
FOLLOW_UP = """
import sys
import grpc
from engram.v1 import agent_pb2, agent_pb2_grpc

stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel('localhost:50051'))
msg = agent_pb2.ClientMessage(
    agent_id=sys.argv[1],
    user_input=agent_pb2.UserInput(content="What table were we talking about?"),
)
print("".join(m.text.content for m in stub.Chat(iter([msg])) if m.HasField('text')))
"""

PRINT_AGENT_ID = "\nprint(f'AGENT_ID={agent_id}')\n"


def run_client(python: Path | str, source: str, engine: Engine, *args: str) -> str:
    if engine.port != DEFAULT_PORT:  # only when 50051 was taken on this machine
        source = source.replace("localhost:50051", engine.address)
    done = subprocess.run(
        [str(python), "-c", source, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # so the engram package in this checkout cannot shadow the client's
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_example(python: Path | str, engine: Engine, llm: FakeLLM) -> None:
    # Paced as a model makes them, tokens arrive one per message (a model faster than the stream
    # would have them coalesced); together they are the whole reply.
    llm.token_delay = 0.02
    out = run_client(python, EXAMPLE + PRINT_AGENT_ID, engine)
    lines = out.splitlines()
    agent_lines = [line for line in lines if line.startswith("Agent: ")]
    assert len(agent_lines) > 3
    reply = "".join(line.removeprefix("Agent: ") for line in agent_lines)
    assert reply == "You said: We are seeing slow joins on the 'users' table."
    agent_id = next(line.split("=", 1)[1] for line in lines if line.startswith("AGENT_ID="))

    answer = run_client(python, FOLLOW_UP, engine, agent_id)
    assert "the 'users' table" in answer
    sent = llm.requests_for("What table were we talking about?")[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert "You are a senior DBA using Postgres..." in sent[0]["content"]
    assert "Optimize the backend database queries." in sent[0]["content"]
    assert sent[1]["content"] == "We are seeing slow joins on the 'users' table."
    assert sent[2]["content"] == reply


def test_example_with_engram_stubs(engine: Engine, llm: FakeLLM) -> None:
    check_example(sys.executable, engine, llm)


def test_example_with_published_sdk(engine: Engine, llm: FakeLLM, sdk_python: Path) -> None:
    where = subprocess.run(
        [str(sdk_python), "-c", "import engram.v1.agent_pb2 as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    assert "site-packages" in where and str(sdk_python.parent.parent) in where
    check_example(sdk_python, engine, llm)

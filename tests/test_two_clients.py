"""Two clients chatting with one agent at once: each Chat stream carries its own turns only.

Found by probing: a stream used to fill the gaps between its own turns from the agent's record,
so alice's stream also delivered bob's answers, and a client without message ids (the published
engram-sdk) printed bob's reply as the answer to its own message.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import create_agent, finals, user_message, without_time
from tests.engine import Engine
from tests.fake_llm import FakeLLM
from tests.test_example import run_client

TURNS = 5


def test_each_stream_carries_its_own_turns(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.token_delay = 0.005
    agent_id = create_agent(stub)

    def client(name: str) -> list[agent_pb2.ServerMessage]:
        messages = [user_message(agent_id, f"{name} says {i}") for i in range(TURNS)]
        return list(stub.Chat(iter(messages), timeout=120))

    with ThreadPoolExecutor(2) as pool:
        alice, bob = pool.map(client, ["alice", "bob"])

    stored = list(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=30))
    for name, got in (("alice", alice), ("bob", bob)):
        assert finals(got) == [f"You said: {name} says {i}" for i in range(TURNS)]
        seqs = [m.sequence_id for m in got]
        assert seqs == sorted(set(seqs)), seqs
        # Every message belongs to one of this client's turns, and each turn came whole.
        own = {m.message_id for m in got if m.HasField("user_message")}
        assert len(own) == TURNS and {m.message_id for m in got} == own
        theirs = [without_time(m) for m in stored if m.message_id in own]
        assert [without_time(m) for m in got] == theirs
    # Both clients' turns are in the agent's one transcript.
    assert len(finals(stored)) == 2 * TURNS


TWO_SDK_CLIENTS = """
import json, sys, threading
import grpc
from engram.v1 import agent_pb2, agent_pb2_grpc

stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel('localhost:50051'))
agent_id = sys.argv[1]
seen = {}

def client(name):
    messages = [
        agent_pb2.ClientMessage(
            agent_id=agent_id, user_input=agent_pb2.UserInput(content=f"{name} says {i}")
        )
        for i in range(5)
    ]
    seen[name] = [
        (m.sequence_id, m.final_answer.content if m.HasField('final_answer') else None)
        for m in stub.Chat(iter(messages), timeout=120)
    ]

threads = [threading.Thread(target=client, args=(n,)) for n in ("alice", "bob")]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(seen))
"""


def test_published_sdk_clients_get_their_own_answers(
    engine: Engine, stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM, sdk_python: Path
) -> None:
    llm.token_delay = 0.005
    agent_id = create_agent(stub)
    seen = json.loads(run_client(sdk_python, TWO_SDK_CLIENTS, engine, agent_id))
    for name in ("alice", "bob"):
        seqs = [seq for seq, _ in seen[name]]
        assert seqs == sorted(set(seqs))
        answers = [final for _, final in seen[name] if final is not None]
        assert answers == [f"You said: {name} says {i}" for i in range(TURNS)]

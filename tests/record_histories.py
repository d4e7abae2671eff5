"""Record agent workflow histories for the replay tests: `python -m tests.record_histories`.

Run it before changing workflow logic, and keep the old files: every history recorded by a
released version must still replay (tests/test_replay_histories.py).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
import tomllib
from pathlib import Path

from google.protobuf.struct_pb2 import Struct
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2
from tests.conftest import chat, create_agent
from tests.engine import Engine
from tests.fake_llm import FakeLLM, default_reply, note_taker

HERE = Path(__file__).resolve().parent / "histories"


def scenario(engine: Engine, llm: FakeLLM) -> str:
    """One agent down every path of the workflow: turns, memory notes, an edit, compaction
    (counted with the OpenAI tokenizer), archiving, pause, failure, retry, cancel, a model
    refusing tools, delete."""
    stub = engine.stub()
    agent_id = create_agent(
        stub,
        goal="Remember things.",
        model="gpt-4o-mini",
        system_prompt="Be brief.",
        config=agent_pb2.AgentConfig(max_context_tokens=200),
    )
    chat(stub, agent_id, "My name is Ada.", "What is my name?")
    llm.reply = note_taker
    chat(stub, agent_id, "remember user_name: Ada", "call remember {not json")
    patch = Struct()
    patch.update({"goal": "Remember more.", "temperature": 0.5, "memory": {"team": "db"}})
    stub.ControlAgent(
        agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=agent_pb2.Edit(patch=patch))
    )
    # A long reply: its stream events go to the transcript store, its text into a summary.
    llm.reply = lambda _: "tok " * 600
    chat(stub, agent_id, "Tell me a long story.")
    llm.reply = default_reply
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, pause=agent_pb2.Pause()))
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, resume=agent_pb2.Resume()))
    llm.api_key = "refused"
    chat(stub, agent_id, "This one fails.")
    llm.api_key = None
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, retry=agent_pb2.Retry()))
    time.sleep(1)
    llm.token_delay = 0.05
    cancel = threading.Timer(
        0.5,
        lambda: stub.ControlAgent(
            agent_pb2.ControlAgentRequest(agent_id=agent_id, cancel=agent_pb2.Cancel())
        ),
    )
    cancel.start()
    llm.reply = lambda _: "word " * 100
    chat(stub, agent_id, "This one is cancelled.")
    llm.token_delay = 0
    llm.reply = default_reply
    llm.refuse_tools = True
    chat(stub, agent_id, "No tools for me.")
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id))
    time.sleep(1)
    return agent_id


async def fetch(engine: Engine, agent_id: str) -> dict[str, object]:
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    history = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).fetch_history()
    return history.to_json_dict()


def main() -> None:
    llm = FakeLLM().start()
    with tempfile.TemporaryDirectory() as data:
        engine = Engine(Path(data), llm.url).start()
        try:
            agent_id = scenario(engine, llm)
            history = asyncio.run(fetch(engine, agent_id))
        finally:
            engine.stop()
    pyproject = tomllib.loads((HERE.parent.parent / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]
    target = HERE / f"agent-v{version}.json"
    target.write_text(json.dumps(history, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

"""Memory survives the engine being killed outright; secrets stay out of history and logs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client

from engram.v1 import agent_pb2
from tests.conftest import SECRET, chat, create_agent, finals, history_text, text_of
from tests.engine import Engine
from tests.fake_llm import FakeLLM


@pytest.mark.chaos
def test_agent_remembers_after_sigkill_of_the_whole_engine(tmp_path: Path, llm: FakeLLM) -> None:
    engine = Engine(tmp_path / "data", llm.url).start()
    try:
        stub = engine.stub()
        agent_id = create_agent(stub, goal="Tune Postgres.")
        first = chat(stub, agent_id, "We are seeing slow joins on the 'orders' table.")
        engine.kill()  # engine, worker, gateway and Temporal server, all at once

        engine.start()
        stub = engine.stub()
        again = chat(stub, agent_id, "What table were we talking about?")
        assert "the 'orders' table" in text_of(again)
        # Sequence ids go on where they left off.
        assert again[0].sequence_id == first[-1].sequence_id + 1
        agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
        assert agent.goal == "Tune Postgres." and agent.stats.total_steps == 2
        turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
        assert [t.outcome for t in turns] == ["completed", "completed"]
    finally:
        engine.stop()


@pytest.mark.chaos
def test_ctrl_c_stops_everything(tmp_path: Path, llm: FakeLLM) -> None:
    engine = Engine(tmp_path / "data", llm.url).start()
    assert engine.stop() == 0
    assert "Engram stopped." in engine.log()
    # The Temporal server went with it: its port is free again.
    engine.start()
    assert finals(chat(engine.stub(), create_agent(engine.stub()), "hi")) == ["You said: hi"]
    engine.stop()


def test_api_key_is_used_but_never_recorded(engine: Engine, llm: FakeLLM) -> None:
    stub = engine.stub()
    agent_id = create_agent(stub)
    chat(stub, agent_id, "is my key safe?")
    llm.api_key = "wrong"
    chat(stub, agent_id, "and when the endpoint refuses it?")
    # The worker did send it to the endpoint...
    assert any(h.get("authorization") == f"Bearer {SECRET}" for h in llm.headers)

    # ...but no workflow history holds it, nor does any log.
    async def histories() -> list[str]:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        found = []
        async for execution in client.list_workflows("WorkflowType = 'AgentWorkflow'"):
            history = await client.get_workflow_handle(
                execution.id, run_id=execution.run_id
            ).fetch_history()
            found.append(history_text(history.to_json_dict()))
        return found

    recorded = asyncio.run(histories())
    assert recorded and any(agent_id in h for h in recorded)
    assert not any(SECRET in h for h in recorded)
    for log in engine.data_dir.rglob("*.log"):
        assert SECRET not in log.read_text(errors="replace"), log

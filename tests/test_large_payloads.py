"""No size a user may send can wedge an agent: large payloads leave the history.

Each message here is within the gateway's 64 KiB limit; together they make a conversation far
over Temporal's 2 MB payload limit, which a 1M-token agent keeps in its state and prompts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.codec.claim_check import HISTORY_INLINE_BYTES
from engram.transcripts import open_transcript_store
from engram.v1 import agent_pb2
from engram.workflows.prompt import DEFAULT_CONTEXT_TOKENS
from engram.workflows.tokens import CHARS_PER_TOKEN
from tests.conftest import chat, create_agent, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM, text_of_content
from tests.test_control import get

MESSAGE = 60_000
TURNS = 22  # 22 x 60 KB asked, and as much echoed back: 2.6 MB of conversation


@pytest.fixture
def engine_with_short_runs(fake_llm: FakeLLM, tmp_path: Path) -> Iterator[Engine]:
    # Runs continue as new every few turns, carrying the whole conversation each time.
    engine = Engine(tmp_path, fake_llm.url, extra_args=("--max-history-events", "60")).start()
    yield engine
    engine.stop()


async def test_a_1m_context_agent_fed_2_5_mb_keeps_answering(
    engine_with_short_runs: Engine, llm: FakeLLM
) -> None:
    engine = engine_with_short_runs
    stub = engine.stub()
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=1_000_000))
    for i in range(TURNS):
        text = f"part {i}: " + "x" * MESSAGE
        assert finals(chat(stub, agent_id, text)) == [f"You said: {text}"]
    assert get(stub, agent_id).status == "idle"
    # The model was sent the whole conversation: the prompt alone is over 2 MB.
    sent = json.dumps(llm.requests[-1]["messages"])
    assert len(sent) > 2_500_000 and f"part 0: {'x' * 100}" in sent

    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    handle = client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id)
    runs = 0
    async for execution in client.list_workflows(f"WorkflowId = '{handle.id}'"):
        runs += 1
        history = await client.get_workflow_handle(
            handle.id, run_id=execution.run_id
        ).fetch_history()
        largest = max(_payload_sizes(history.to_json_dict()), default=0)
        assert 0 < largest <= HISTORY_INLINE_BYTES, (execution.run_id, largest)
    assert runs >= 3


def _payload_sizes(node: object) -> Iterator[int]:
    """The size of every payload in a history's JSON form."""
    if isinstance(node, dict):
        if "metadata" in node and isinstance(node.get("data"), str):
            yield len(base64.b64decode(node["data"]))
        for value in node.values():
            yield from _payload_sizes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _payload_sizes(value)


def test_a_5_mb_text_attachment_reaches_the_model_cut_to_its_budget_and_is_kept_whole(
    engine: Engine, llm: FakeLLM
) -> None:
    stub = engine.stub()
    llm.reply = lambda messages: "Read it."
    agent_id = create_agent(stub)
    lines = [f"line {i:07d} of the log\n" for i in range(240_000)]
    data = "".join(lines).encode()
    assert len(data) > 5_000_000
    message = agent_pb2.ClientMessage(
        agent_id=agent_id,
        user_input=agent_pb2.UserInput(
            content="What is in this log?",
            attachments=[agent_pb2.Attachment(name="big.log", mime_type="text/plain", data=data)],
        ),
    )
    assert finals(list(stub.Chat(iter([message]), timeout=60))) == ["Read it."]
    sent = text_of_content(llm.requests_for("What is in this log?")[0]["messages"][-1]["content"])
    room = DEFAULT_CONTEXT_TOKENS * CHARS_PER_TOKEN // 2
    assert lines[0] in sent and lines[-1] not in sent
    assert f"{len(data) - room} more characters of big.log not shown" in sent
    assert len(sent) < room + 1000
    # The whole file is in the store, by its hash, and the agent goes on.
    store = open_transcript_store(engine.data_dir / "transcripts.db")
    try:
        assert store.get_blob(hashlib.sha256(data).hexdigest()) == data
    finally:
        store.close()
    assert finals(chat(stub, agent_id, "Thanks")) == ["Read it."]

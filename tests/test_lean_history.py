"""A chat turn's history costs the same whatever the size of its message and reply: the text lives
in the blob store, and the prompt names what it already holds by hash."""

from __future__ import annotations

import asyncio
import base64
import hashlib

from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.codec.claim_check import HISTORY_INLINE_BYTES, stays_inline
from engram.codec.keyring import Keyring
from engram.codec.payload_codec import PLAIN, PayloadCipher
from engram.v1 import agent_pb2
from engram.v1.agent_pb2_grpc import AgentServiceStub as Stub
from engram.vocabulary import EventKind
from engram.workflows.types import Event, EventsPage, LLMRequest
from tests.conftest import chat, create_agent, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM

LONG = 20_000


def history_bytes(engine: Engine, agent_id: str) -> int:
    async def measure() -> int:
        client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
        history = await client.get_workflow_handle(WORKFLOW_ID_PREFIX + agent_id).fetch_history()
        return sum(event.ByteSize() for event in history.events)

    return asyncio.run(measure())


def turn_cost(engine: Engine, stub: Stub, agent_id: str, text: str) -> int:
    before = history_bytes(engine, agent_id)
    assert finals(chat(stub, agent_id, text)) == [f"You said: {text}"]
    return history_bytes(engine, agent_id) - before


def test_history_per_turn_does_not_grow_with_the_message(
    engine: Engine, stub: Stub, llm: FakeLLM
) -> None:
    config = agent_pb2.AgentConfig(max_context_tokens=200_000)
    short_agent = create_agent(stub, config=config)
    long_agent = create_agent(stub, config=config)
    short = [turn_cost(engine, stub, short_agent, f"turn {i}: " + "x" * 90) for i in range(3)]
    sent_before = len(llm.requests)
    long = [turn_cost(engine, stub, long_agent, f"turn {i}: " + "y" * LONG) for i in range(3)]
    # Each long turn is asked 20 KB and answers as much, and its prompt holds the earlier ones...
    prompts = [r["messages"] for r in llm.requests[sent_before:]]
    assert sum(len(m["content"]) for m in prompts[-1]) > 5 * LONG
    # ...yet costs its history about what a 100-character turn does.
    assert max(long) <= max(short) + 2 * HISTORY_INLINE_BYTES, (short, long)
    assert max(long) < 16_000, long


def test_query_answers_stay_inline_and_everything_else_leaves() -> None:
    """Answers to queries are never in history and a follower asks for them again and again: the
    blob store would fill with copies. Everything else past HISTORY_INLINE_BYTES leaves."""
    keyring = Keyring.parse("k1:" + base64.b64encode(b"k" * 32).decode())
    # Text that does not compress: the encrypting codec compresses first.
    words = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(100)]
    events = [Event(seq=i, kind=EventKind.TEXT, text=w) for i, w in enumerate(words)]
    request = LLMRequest(
        agent_id="a", message_id="m", model="x", messages=[], prelude=events, first_text_seq=1
    )
    plain = PLAIN.payload_converter.to_payloads([EventsPage(events), request])
    cipher = PayloadCipher(keyring)
    for answer, prompt in (plain, [cipher.encode(p) for p in plain]):
        assert answer.ByteSize() > HISTORY_INLINE_BYTES and prompt.ByteSize() > 4_000
        assert stays_inline(answer) and not stays_inline(prompt)

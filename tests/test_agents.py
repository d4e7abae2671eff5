"""CreateAgent stores everything it is given and applies the settings that matter today."""

from __future__ import annotations

from dataclasses import replace

from google.protobuf.struct_pb2 import Struct

from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import TurnOutcome
from engram.workflows.prompt import build_prompt, estimate_tokens
from engram.workflows.tokens import cl100k, has_tokenizer
from engram.workflows.types import AgentSpec, ChatMessage, Turn
from tests.conftest import chat, create_agent, unique
from tests.fake_llm import FakeLLM


def test_create_stores_tools_config_and_metadata(stub: agent_pb2_grpc.AgentServiceStub) -> None:
    schema = Struct()
    schema.update({"type": "object", "properties": {"sql": {"type": "string"}}})
    tool = agent_pb2.Tool(
        name="run_sql",
        description="Run a query",
        parameters_schema=schema,
        requires_confirmation=True,
    )
    config = agent_pb2.AgentConfig(
        max_steps=7, temperature=0.25, max_context_tokens=2048, enable_thinking=True
    )
    config.max_duration.FromSeconds(90)
    response = stub.CreateAgent(
        agent_pb2.CreateAgentRequest(
            goal="g",
            model="m",
            system_prompt="s",
            metadata={"team": "db"},
            tools=[tool],
            config=config,
        )
    )
    assert response.agent.agent_id == response.agent_id and response.agent.status == "idle"
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=response.agent_id))
    # Returned as resolved: the same tool, and where it runs (a client tool: it has a schema).
    resolved = agent_pb2.Tool()
    resolved.CopyFrom(tool)
    resolved.kind = "client"
    assert list(agent.tools) == [resolved]
    assert agent.config == config
    assert dict(agent.metadata) == {"team": "db"}
    assert (agent.goal, agent.model, agent.system_prompt) == ("g", "m", "s")
    assert agent.created_at.ToNanoseconds() > 0


def test_temperature_is_sent_to_the_llm(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    warm = create_agent(stub, config=agent_pb2.AgentConfig(temperature=0.75))
    default = create_agent(stub)
    a, b = unique("warm"), unique("default")
    chat(stub, warm, a)
    chat(stub, default, b)
    assert llm.requests_for(a)[-1]["temperature"] == 0.75
    assert "temperature" not in llm.requests_for(b)[-1]


def test_context_budget_bounds_the_prompt(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=120))
    contents = [unique(f"turn {i} " + "padding " * 10) for i in range(6)]
    for content in contents:
        chat(stub, agent_id, content)
    sent = llm.requests_for(contents[-1])[-1]["messages"]
    users = [m["content"] for m in sent if m["role"] == "user"]
    assert users[-1] == contents[-1]
    assert len(users) < len(contents)
    assert users == contents[-len(users) :]  # the newest turns, verbatim and in order
    assert "Summary of the conversation" in sent[0]["content"]  # the older ones, summarized
    assert sum(estimate_tokens(ChatMessage(m["role"], m["content"])) for m in sent) <= 120
    # Nothing is forgotten: the transcript still has every turn.
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    assert [t.user for t in turns] == contents


def test_openai_models_are_counted_with_their_tokenizer() -> None:
    assert cl100k("hello world") == 2
    assert cl100k("<|endoftext|>") > 1  # text, never a special token
    assert has_tokenizer("gpt-4o-mini") and has_tokenizer("o3-mini")
    assert not has_tokenizer("llama3.2") and not has_tokenizer("fake-model")


def test_budget_of_an_openai_agent_counts_real_tokens(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    """Digits cost a token per three characters, not per four: an estimate would overrun."""
    agent_id = create_agent(
        stub, model="gpt-4o-mini", config=agent_pb2.AgentConfig(max_context_tokens=200)
    )
    contents = [unique(f"code {i}: " + "8406352719 " * 8) for i in range(8)]
    for content in contents:
        chat(stub, agent_id, content)
    [request] = [r for r in llm.requests_for(contents[-1]) if r.get("stream")]
    sent = [ChatMessage(m["role"], m["content"]) for m in request["messages"]]
    assert sum(estimate_tokens(m, cl100k) for m in sent) <= 200
    assert sum(estimate_tokens(m, cl100k) for m in sent) > sum(estimate_tokens(m) for m in sent)


def test_prompt_keeps_pairs_and_skips_failed_turns() -> None:
    spec = AgentSpec(agent_id="a", goal="Win.", model="m", system_prompt="Be brief.")
    turns = [
        Turn("1", "q1", outcome=TurnOutcome.COMPLETED, reply="a1"),
        Turn("2", "q2", outcome=TurnOutcome.FAILED, error="boom"),
        Turn("3", "q3", outcome=TurnOutcome.COMPLETED, reply="a3"),
    ]
    prompt = build_prompt(spec, turns, "q4")
    assert [(m.role, m.content) for m in prompt] == [
        ("system", "Be brief.\n\nYour goal: Win."),
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q3"),
        ("assistant", "a3"),
        ("user", "q4"),
    ]
    spec.settings = replace(
        spec.settings, max_context_tokens=sum(estimate_tokens(m) for m in prompt) - 1
    )
    trimmed = build_prompt(spec, turns, "q4")
    assert [m.content for m in trimmed] == ["Be brief.\n\nYour goal: Win.", "q3", "a3", "q4"]

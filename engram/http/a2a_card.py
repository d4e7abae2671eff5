"""An agent's A2A card: who it is (its goal), where it answers, and how to authenticate."""

from __future__ import annotations

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)

from engram.v1 import agent_pb2

JSONRPC = "JSONRPC"
# A2A 1.0's JSON-RPC, and 0.3's method names (`message/send`, `message/stream`, `tasks/get`).
PROTOCOL_VERSIONS = ("1.0", "0.3")


def agent_card(agent: agent_pb2.Agent, url: str, version: str) -> AgentCard:
    """The card of `agent`, answering at `url` (its `/a2a/{agent_id}`)."""
    name = agent.metadata.get("name") or f"Engram agent {agent.agent_id}"
    tools = [tool.name for tool in agent.tools]
    skill = AgentSkill(
        id="chat",
        name="Chat",
        description=f"Send the agent a message; it works towards its goal and answers. "
        f"Goal: {agent.goal}" + (f" Tools: {', '.join(tools)}." if tools else ""),
        tags=["chat", "engram", *tools],
        input_modes=["text/plain", "application/json"],
        output_modes=["text/plain"],
    )
    return AgentCard(
        name=name,
        description=agent.goal,
        version=version,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=JSONRPC, protocol_version=v)
            for v in PROTOCOL_VERSIONS
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain"],
        skills=[skill],
        security_schemes={
            "bearer": SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="bearer", description="An Engram API key"
                )
            )
        },
        security_requirements=[SecurityRequirement(schemes={"bearer": StringList()})],
    )

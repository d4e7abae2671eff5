"""A typed Python client for Engram's gRPC API, blocking (`Engram`) and asyncio (`AsyncEngram`).

    from engram.client import Engram, Text

    engram = Engram("localhost:50051")
    agent = engram.create_agent(model="llama3.1", goal="Help with Postgres.")
    for event in agent.send("Why are joins on 'users' slow?"):
        if isinstance(event, Text):
            print(event.content, end="", flush=True)

Message ids are made for you, so a resend is never a second turn; a dropped connection or a
restarted gateway is waited out and the stream picked up where it was, each event exactly once.
"""

from engram.client.aio import AsyncAgent, AsyncEngram, AsyncTurn
from engram.client.errors import EngramError, EngramUnavailable, TurnFailed
from engram.client.events import (
    Error,
    Event,
    Final,
    Status,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    UserMessage,
)
from engram.client.hooks import Decision
from engram.client.records import AgentInfo, Note, PendingCall, TurnRecord
from engram.client.sync import Agent, Engram, Turn

__all__ = [
    "Agent",
    "AgentInfo",
    "AsyncAgent",
    "AsyncEngram",
    "AsyncTurn",
    "Decision",
    "Engram",
    "EngramError",
    "EngramUnavailable",
    "Error",
    "Event",
    "Final",
    "Note",
    "PendingCall",
    "Status",
    "Text",
    "Thought",
    "ToolCall",
    "ToolResult",
    "Turn",
    "TurnFailed",
    "TurnRecord",
    "UserMessage",
]

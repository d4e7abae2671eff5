"""Record workflow histories for the replay tests: `python -m tests.record_histories [agent]
[wake-up]` (both when neither is named).

Run it before changing workflow logic, and keep the old files: every history recorded by a
released version must still replay (tests/test_replay_histories.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from temporalio.client import Client

from engram import WORKFLOW_ID_PREFIX
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import TEST_TOOLS, chat, create_agent
from tests.engine import Engine
from tests.fake_llm import FakeLLM, Reasoning, Script, ToolUse, default_reply, note_taker

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
    llm.refuse_tools = False
    stub.DeleteAgent(agent_pb2.DeleteAgentRequest(agent_id=agent_id))
    time.sleep(1)
    return agent_id


def approve_when_asked(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, **answer: object
) -> None:
    """In the background, answer the next call that waits for approval."""

    def answer_it() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
            for call in agent.pending_calls:
                approval = agent_pb2.Approval(call_id=call.call_id, **answer)  # type: ignore[arg-type]
                if call.waiting_for == "approval":
                    stub.ControlAgent(
                        agent_pb2.ControlAgentRequest(agent_id=agent_id, approval=approval)
                    )
                else:
                    result = agent_pb2.ToolResult(call_id=call.call_id, output="Lisbon")
                    stub.ControlAgent(
                        agent_pb2.ControlAgentRequest(agent_id=agent_id, tool_result=result)
                    )
                return
            time.sleep(0.05)

    threading.Thread(target=answer_it, daemon=True).start()


def tools_scenario(engine: Engine, llm: FakeLLM) -> str:
    """An agent with worker and client tools: calls, approvals (approved with edited input,
    denied, timed out), a client tool's result, thinking, observation, an attachment."""
    stub = engine.stub()
    location = agent_pb2.Tool(name="get_location", description="Where the user is.")
    location.parameters_schema.update({"type": "object", "properties": {}})
    agent_id = create_agent(
        stub,
        goal="Operate the services.",
        tools=[
            agent_pb2.Tool(name="add"),
            agent_pb2.Tool(name="deploy"),
            agent_pb2.Tool(
                name="record_effect",
                requires_confirmation=True,
                approval_timeout=Duration(seconds=1),
            ),
            location,
        ],
        config=agent_pb2.AgentConfig(enable_thinking=True, enable_observation=True),
    )
    llm.reply = note_taker
    chat(stub, agent_id, 'call add {"a": 2, "b": 3}')
    approve_when_asked(stub, agent_id, approved=True, edited_input_json='{"service": "web"}')
    chat(stub, agent_id, 'call deploy {"service": "api"}')
    approve_when_asked(stub, agent_id, approved=False, reason="not today")
    chat(stub, agent_id, 'call deploy {"service": "db"}')
    stub.ControlAgent(
        agent_pb2.ControlAgentRequest(
            agent_id=agent_id,
            edit=agent_pb2.Edit(patch=_patch({"goal": "Operate carefully."})),
        )
    )
    chat(stub, agent_id, 'call record_effect {"label": "late"}')
    approve_when_asked(stub, agent_id)
    chat(stub, agent_id, "call get_location {}")
    llm.reply = lambda _: Reasoning("Thinking it over.", "Here it is.")
    image = agent_pb2.Attachment(name="notes.txt", mime_type="text/plain", data=b"a note")
    list(
        stub.Chat(
            iter(
                [
                    agent_pb2.ClientMessage(
                        agent_id=agent_id,
                        user_input=agent_pb2.UserInput(content="Read this.", attachments=[image]),
                    )
                ]
            ),
            timeout=60,
        )
    )
    llm.reply = default_reply
    return agent_id


def run_scenario(engine: Engine, llm: FakeLLM) -> str:
    """An autonomous agent: steps, a wait, a question and its answer, a finish; then a second
    run that reaches its step limit (4) and reports."""
    stub = engine.stub()
    llm.reply = Script(
        ToolUse([("remember", '{"name": "plan", "content": "check twice"}')]),
        ToolUse([("wait", '{"seconds": 1, "reason": "the build"}')]),
        ToolUse([("ask_user", '{"question": "Ship it?"}')]),
        ToolUse([("finish", '{"answer": "Shipped.", "structured": {"ok": true}}')]),
        *[ToolUse([("remember", f'{{"name": "again", "content": "{i}"}}')]) for i in range(4)],
        "Stopped after four steps.",
    )
    agent_id = create_agent(
        stub,
        goal="Ship the release.",
        config=agent_pb2.AgentConfig(autonomous=True, max_steps=4),
    )
    deadline = time.monotonic() + 30
    while not stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).run.run_id or (
        stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).status != "idle"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    chat(stub, agent_id, "Yes, ship it.")
    run = agent_pb2.ControlAgentRequest(agent_id=agent_id, run=agent_pb2.Run(instructions="Again."))
    stub.ControlAgent(run)
    while stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).HasField("run") or (
        stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).status != "idle"
    ):
        assert time.monotonic() < deadline + 30
        time.sleep(0.1)
    llm.reply = default_reply
    return agent_id


def wake_up_scenario(engine: Engine, llm: FakeLLM) -> dict[str, str]:
    """A schedule's wake-ups (buffer_one, every second) while the agent works on a run of its
    own: the first waits for that run, then starts its own and watches it end ("woke"); the one
    kept behind it finds its time covered by that run ("covered"). Their workflow ids."""
    stub = engine.stub()

    def reply(messages: list[dict[str, Any]]) -> ToolUse:
        long_job = "The long job." in json.dumps(messages)
        if long_job and messages[-1]["role"] != "tool":
            return ToolUse([("wait", '{"seconds": 3, "reason": "the long job"}')])
        return ToolUse([("finish", '{"answer": "Done."}')])

    llm.reply = reply
    agent_id = create_agent(stub, goal="Watch the alerts.")
    run = agent_pb2.Run(instructions="The long job.")
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, run=run))
    request = agent_pb2.CreateScheduleRequest(
        agent_id=agent_id,
        name="alerts",
        every=Duration(seconds=1),
        instructions="Check the alerts.",
        overlap="buffer_one",
    )
    schedule_id = stub.CreateSchedule(request).schedule_id
    outcomes = asyncio.run(_wake_ups_until(engine, schedule_id, {"woke", "covered"}))
    stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name="alerts"))
    llm.reply = default_reply
    return outcomes


async def _wake_ups_until(engine: Engine, schedule_id: str, wanted: set[str]) -> dict[str, str]:
    """Workflow id of the first ended wake-up of each outcome wanted."""
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    query = f"WorkflowType = 'WakeUpWorkflow' AND WorkflowId STARTS_WITH '{schedule_id}'"
    found: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while set(found) != wanted:
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.5)
        async for execution in client.list_workflows(query + " AND ExecutionStatus = 'Completed'"):
            outcome = (await client.get_workflow_handle(execution.id).result())["outcome"]
            if outcome in wanted:
                found.setdefault(outcome, execution.id)
    return found


def _patch(values: dict[str, str]) -> Struct:
    patch = Struct()
    patch.update(values)
    return patch


async def fetch(engine: Engine, workflow_id: str) -> dict[str, object]:
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return history.to_json_dict()


def write(engine: Engine, workflow_id: str, name: str) -> None:
    history = asyncio.run(fetch(engine, workflow_id))
    target = HERE / f"{name}.json"
    target.write_text(json.dumps(history, indent=1) + "\n")
    print(f"wrote {target}")


def main() -> None:
    wanted = set(sys.argv[1:]) or {"agent", "wake-up"}
    llm = FakeLLM().start()
    pyproject = tomllib.loads((HERE.parent.parent / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]
    with tempfile.TemporaryDirectory() as data:
        engine = Engine(
            Path(data),
            llm.url,
            ENGRAM_TOOLS=TEST_TOOLS,
            ENGRAM_TEST_EFFECTS=str(Path(data) / "effects.log"),
        ).start()
        try:
            for suffix, recorded in (
                ("", scenario),
                ("-tools", tools_scenario),
                ("-run", run_scenario),
            ):
                if "agent" in wanted:
                    agent_id = recorded(engine, llm)
                    write(engine, WORKFLOW_ID_PREFIX + agent_id, f"agent-v{version}{suffix}")
            if "wake-up" in wanted:
                for outcome, workflow_id in wake_up_scenario(engine, llm).items():
                    write(engine, workflow_id, f"wake-up-v{version}-{outcome}")
        finally:
            engine.stop()


if __name__ == "__main__":
    main()

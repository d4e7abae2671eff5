"""Record workflow histories for the replay tests: `python -m tests.record_histories` (every
scenario) or `python -m tests.record_histories agents wake-up` (the ones named). Files are named
for pyproject's version, or for the one given first as `--version X` (the release that will
ship a change not yet released).

Run it before changing workflow logic, and keep the old files: every history recorded by a
released version must still replay (tests/test_replay_histories.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.converter import ExternalStorage

from engram import WORKFLOW_ID_PREFIX
from engram.codec.claim_check import with_claim_check
from engram.codec.payload_codec import PLAIN
from engram.deployment import set_current
from engram.transcripts import open_transcript_store
from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import (
    AgentStatus,
    Command,
    ErrorCode,
    Signal,
    ToolKind,
    TurnOutcome,
    Update,
)
from engram.worker import deployment
from engram.workflows.llm_outcome import failed
from engram.workflows.types import (
    AgentTool,
    EditInput,
    LLMResult,
    RelayInput,
    RunInput,
    SubAgentInput,
    ToolCall,
    WithdrawInput,
)
from tests.conftest import TEST_TOOLS, Reader, chat, create_agent, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM, Reasoning, Script, ToolUse, default_reply, note_taker
from tests.workflow_harness import (
    Agent,
    FakeActivities,
    Harness,
    echo,
    eventually,
    llm_failure,
    local_environment,
    running_harness,
    within,
)

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


def double_texting_scenario(engine: Engine, llm: FakeLLM) -> str:
    """Messages sent while the agent works: one cuts off a reply (interrupt), one is taken in
    after a tool call (steer), one is refused (reject), one joins a run at its next step."""
    stub = engine.stub()
    agent_id = create_agent(
        stub, goal="Write.", config=agent_pb2.AgentConfig(double_texting="interrupt")
    )

    def reply(messages: list[dict[str, Any]]) -> str | ToolUse:
        said = [m["content"] for m in messages if m["role"] == "user"]
        if messages[-1]["role"] == "tool":
            return ToolUse([("finish", '{"answer": "Done."}')]) if "Work on" in said[0] else "Ok."
        if "Work on" in said[-1] or "now with notes" in said[-1]:
            return ToolUse([("remember", '{"name": "seen", "content": "yes"}')])
        return "A haiku." if "no, a haiku" in said else "An essay " + "goes on " * 80

    llm.reply, llm.token_delay = reply, 0.02
    essay = Reader(stub.Chat(iter([user_message(agent_id, "write an essay")]), timeout=60))
    essay.wait_for_texts(3)
    chat(stub, agent_id, "no, a haiku")
    assert essay.done.wait(30)
    llm.token_delay, llm.ttft = 0.0, 0.5
    edit = agent_pb2.Edit(patch=_patch({"double_texting": "steer"}))
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=edit))
    noted = Reader(stub.Chat(iter([user_message(agent_id, "now with notes")]), timeout=60))
    time.sleep(0.2)
    chat(stub, agent_id, "and be brief")
    assert noted.done.wait(30)
    edit = agent_pb2.Edit(patch=_patch({"double_texting": "reject"}))
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=edit))
    slow = Reader(stub.Chat(iter([user_message(agent_id, "one more")]), timeout=60))
    time.sleep(0.2)
    try:
        chat(stub, agent_id, "and another")
        raise AssertionError("a message to a busy agent was not refused")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert slow.done.wait(30)
    edit = agent_pb2.Edit(patch=_patch({"double_texting": "queue"}))
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=agent_id, edit=edit))
    run = agent_pb2.ControlAgentRequest(agent_id=agent_id, run=agent_pb2.Run(instructions="Go."))
    stub.ControlAgent(run)
    time.sleep(0.2)
    chat(stub, agent_id, "use staging")
    deadline = time.monotonic() + 30
    while stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).HasField("run"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    llm.reply, llm.ttft = default_reply, 0.0
    return agent_id


def hand_over_scenario(engine: Engine, llm: FakeLLM) -> str:
    """A run followed with Replay that continues as new (the engine keeps 80 history events a
    run): its first run hands the follower over."""
    stub = engine.stub()
    steps = iter(range(1000))
    llm.reply = lambda messages: (
        ToolUse([("finish", '{"answer": "Twelve."}')])
        if (n := next(steps)) >= 12
        else ToolUse([("remember", f'{{"name": "step", "content": "{n}"}}')])
    )
    agent_id = create_agent(stub, goal="Count.", config=agent_pb2.AgentConfig(autonomous=True))
    follow = Reader(stub.Replay(agent_pb2.ReplayRequest(agent_id=agent_id), timeout=60))
    assert follow.done.wait(60) and follow.messages[-1].final_answer.content == "Twelve."
    llm.reply = default_reply
    return agent_id


def agents_scenario(engine: Engine, llm: FakeLLM) -> dict[str, str]:
    """An agent with another agent and `create_helper` as tools: a delegated task answered, a
    helper created, a delegation cancelled while the other agent waits for approval (its turn is
    withdrawn), and one cancelled while the task waits in the paused agent's queue (dropped).
    Both agents' histories: the one that delegates and the one delegated to."""
    stub = engine.stub()
    other = create_agent(stub, goal="Operate the services.", tools=[agent_pb2.Tool(name="deploy")])
    agent_id = create_agent(
        stub,
        goal="Coordinate the release.",
        tools=[agent_pb2.Tool(name=f"agent_{other}"), agent_pb2.Tool(name="create_helper")],
    )
    llm.reply = note_taker

    def delegate(task: str) -> str:
        return f"call agent_{other} {json.dumps({'task': task})}"

    chat(stub, agent_id, delegate("Is the api up?"))
    helper = {"goal": "Write release notes.", "task": "Draft the notes."}
    chat(stub, agent_id, f"call create_helper {json.dumps(helper)}")

    def cancel_when(ready: Callable[[agent_pb2.Agent], bool]) -> None:
        def cancel() -> None:
            deadline = time.monotonic() + 30
            while not ready(stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=other))):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            stub.ControlAgent(
                agent_pb2.ControlAgentRequest(agent_id=agent_id, cancel=agent_pb2.Cancel())
            )

        threading.Thread(target=cancel, daemon=True).start()

    cancel_when(lambda agent: bool(agent.pending_calls))
    chat(stub, agent_id, delegate('call deploy {"service": "api"}'))
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=other, pause=agent_pb2.Pause()))
    cancel_when(lambda agent: agent.queued_messages == 1)
    chat(stub, agent_id, delegate("Later, please."))
    stub.ControlAgent(agent_pb2.ControlAgentRequest(agent_id=other, resume=agent_pb2.Resume()))
    time.sleep(1)
    llm.reply = default_reply
    return {"-delegating": agent_id, "-delegated": other}


SCENARIOS: dict[str, Callable[[Engine, FakeLLM], dict[str, str]]] = {
    "chat": lambda engine, llm: {"": scenario(engine, llm)},
    "tools": lambda engine, llm: {"-tools": tools_scenario(engine, llm)},
    "run": lambda engine, llm: {"-run": run_scenario(engine, llm)},
    "agents": agents_scenario,
    "double-texting": lambda engine, llm: {"-double-texting": double_texting_scenario(engine, llm)},
    "hand-over": lambda engine, llm: {"-hand-over": hand_over_scenario(engine, llm)},
    "long-texts": lambda engine, llm: {"-long-texts": long_texts_scenario(engine, llm)},
    "woken": lambda engine, llm: {"-woken": woken_scenario(engine, llm)},
    "recall": lambda engine, llm: {"-recall": recall_scenario(engine, llm)},
    "code-mode": lambda engine, llm: {"-code-mode": code_mode_scenario(engine, llm)},
    "fork": lambda engine, llm: {"-fork": fork_scenario(engine, llm)},
    "local-tools": lambda engine, llm: {"-local-tools": local_tools_scenario(engine, llm)},
    # WakeUpWorkflow histories (their workflow ids), not agents'.
    "wake-up": lambda engine, llm: {f"-{o}": w for o, w in wake_up_scenario(engine, llm).items()},
}
# Scenarios recorded on an engine of their own, with these arguments; their first run is kept.
OWN_ENGINE = {
    "hand-over": ("--max-history-events", "80"),
    "code-mode": ("--tools", "engram.tools.workspace"),
}


def code_mode_scenario(engine: Engine, llm: FakeLLM) -> str:
    """A `run_script` call (behind the code-mode patch): the script writes a file, is denied an
    edit that asks for approval, and reads the file back; each call a tool step of its own."""
    stub = engine.stub()
    agent_id = create_agent(
        stub,
        tools=[
            agent_pb2.Tool(name="run_script"),
            agent_pb2.Tool(name="write_file"),
            agent_pb2.Tool(name="read_file"),
            agent_pb2.Tool(name="edit_file", requires_confirmation=True),
        ],
    )
    llm.reply = note_taker
    script = (
        'tools.write_file(path="a.txt", content="one")\n'
        "try:\n"
        '    tools.edit_file(path="a.txt", old_text="one", new_text="two")\n'
        "except tools.ToolError as err:\n"
        "    print(err)\n"
        'print(tools.read_file(path="a.txt")["content"])\n'
    )
    approve_when_asked(stub, agent_id, approved=False, reason="no")
    chat(stub, agent_id, "call run_script " + json.dumps({"script": script}))
    llm.reply = default_reply
    return agent_id


def local_tools_scenario(engine: Engine, llm: FakeLLM) -> str:
    """Fast read-only tools (behind the local-fast-tools patch): `fast_lookup` answers as a local
    activity; `fast_lookup_remote` fails there and answers as a regular activity."""
    stub = engine.stub()
    agent_id = create_agent(
        stub, tools=[agent_pb2.Tool(name="fast_lookup"), agent_pb2.Tool(name="fast_lookup_remote")]
    )
    llm.reply = note_taker
    chat(stub, agent_id, 'call fast_lookup {"key": "abc"}')
    chat(stub, agent_id, 'call fast_lookup_remote {"key": "abcd"}')
    llm.reply = default_reply
    return agent_id


def recall_scenario(engine: Engine, llm: FakeLLM) -> str:
    """The model calls `recall` (behind the recall patch): a fact compacted out of its prompt
    comes back, after the events of earlier turns are archived; then a call without a query."""
    stub = engine.stub()
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=200))
    chat(stub, agent_id, "The vault code is quince-42.")
    chat(stub, agent_id, *(f"small talk {i}: the tea is warm" for i in range(6)))

    def searcher(messages: list[dict[str, Any]]) -> str | ToolUse:
        last = messages[-1]
        if last["role"] == "tool":
            return f"Found: {last['content']}"
        if last["content"] == "What was the vault code?":
            return ToolUse([("recall", '{"query": "vault code"}')])
        if last["content"] == "Search for nothing.":
            return ToolUse([("recall", "{}")])
        return "Noted."

    llm.reply = searcher
    chat(stub, agent_id, "What was the vault code?")
    chat(stub, agent_id, "Search for nothing.")
    llm.reply = default_reply
    return agent_id


def fork_scenario(engine: Engine, llm: FakeLLM) -> str:
    """An agent that compacts (each archived batch with its summary), is rewound to before the
    compactions (the store forgets the tail), and goes on."""
    stub = engine.stub()
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=200))
    ends = [
        chat(stub, agent_id, f"turn {n} of the fork scenario")[-1].sequence_id for n in range(8)
    ]
    stub.RewindAgent(agent_pb2.RewindAgentRequest(agent_id=agent_id, to_sequence=ends[2]))
    chat(stub, agent_id, "after the rewind")
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


def woken_scenario(engine: Engine, llm: FakeLLM) -> str:
    """An agent a schedule wakes: the wake-up follows its run (`follow_run`), and the agent
    signals it when the run ends (`run_ended`)."""
    stub = engine.stub()
    llm.reply = lambda messages: ToolUse([("finish", '{"answer": "Done."}')])
    agent_id = create_agent(stub, goal="Watch the alerts.")
    request = agent_pb2.CreateScheduleRequest(
        agent_id=agent_id, name="alerts", every=Duration(seconds=1), instructions="Check."
    )
    schedule_id = stub.CreateSchedule(request).schedule_id
    asyncio.run(_wake_ups_until(engine, schedule_id, {"woke"}))
    stub.DeleteSchedule(agent_pb2.DeleteScheduleRequest(agent_id=agent_id, name="alerts"))
    llm.reply = default_reply
    return agent_id


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


async def fetch(engine: Engine, workflow_id: str, first_run: bool = False) -> dict[str, object]:
    """The workflow's latest run's history (or its first run's)."""
    client = await Client.connect(f"127.0.0.1:{engine.temporal_port}")
    run_id = None
    if first_run:
        runs = [r async for r in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        run_id = min(runs, key=lambda r: r.start_time).run_id
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    recorded = history.to_json_dict()
    # Payloads the claim check moved to the engine's blob store go back inline: a recorded
    # history must replay without that store.
    store = open_transcript_store(engine.data_dir / "transcripts.db")
    try:
        storage = with_claim_check(PLAIN, store).external_storage
        assert storage is not None
        await _inline(recorded, storage)
    finally:
        store.close()
    return recorded


async def _inline(node: object, storage: ExternalStorage) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("data"), str) and "metadata" in node:
            payload = json_format.ParseDict(node, Payload())
            stored = await storage._retrieve_payload(payload)
            if stored is not payload:
                node.clear()
                node.update(json_format.MessageToDict(stored))
            return
        for value in node.values():
            await _inline(value, storage)
    elif isinstance(node, list):
        for value in node:
            await _inline(value, storage)


def long_texts_scenario(engine: Engine, llm: FakeLLM) -> str:
    """Messages and replies past the claim check's threshold and prompt_refs.REF_CHARS: later
    prompts name the earlier texts by hash."""
    stub = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(f"127.0.0.1:{engine.port}"))
    agent_id = create_agent(stub, config=agent_pb2.AgentConfig(max_context_tokens=100_000))
    for i in range(3):
        chat(stub, agent_id, f"Text {i}: " + "lorem ipsum " * 500)
    return agent_id


async def cancel_before_tool() -> dict[str, object]:
    """A cancel that comes while a tool call is being announced: the tool never starts. Recorded
    in-process (tests/workflow_harness.py), where the announcement can be held open."""
    work = AgentTool(
        name="work",
        kind=ToolKind.WORKER,
        function={"type": "function", "function": {"name": "work", "parameters": {}}},
    )
    call = LLMResult(
        outcome=TurnOutcome.COMPLETED,
        pieces=[],
        tool_calls=[ToolCall(call_id="c", name="work", arguments="{}")],
    )
    async with local_environment() as env, running_harness(env) as harness:
        fake = harness.fake
        fake.reply = lambda request: call
        fake.announce_gate = asyncio.Event()
        agent = await harness.create_agent(tools=[work])
        turn = await agent.send("work", "m1")
        await eventually(lambda: bool(fake.announced), "the call to be announced")
        await agent.control(Command.CANCEL)
        fake.announce_gate.set()
        await within(turn.result())
        fake.reply = lambda request: "Still here."
        await agent.ask("and now?", "m2")
        history = await agent.handle.fetch_history()
        return history.to_json_dict()


async def handlers() -> dict[str, object]:
    """Every handler that takes a dataclass under the name it was given for that (0.7):
    wait_for_turn, control_agent (retry, pause, resume, cancel), withdraw_message (a queued
    message, then a turn in progress), relay_turn, add_sub_agent; and chat, edit, start_run and
    delete. Recorded in-process, where the harness calls them as the gateway does."""
    async with local_environment() as env, running_harness(env) as harness:
        fake = harness.fake
        agent = await harness.create_agent()
        await agent.ask("hello", "m1")
        await agent.wait_turn("m1")
        fake.reply = lambda request: llm_failure()
        await agent.ask("this one fails", "m2")
        fake.reply = echo
        await agent.control(Command.RETRY)
        await agent.wait_turn("m2#retry1")
        await agent.control(Command.PAUSE)
        dropped = await agent.send("never mind", "m3")
        await _withdraw(agent, "m3")
        with contextlib.suppress(WorkflowUpdateFailedError):
            await within(dropped.result())
        await agent.control(Command.RESUME)
        fake.gate = asyncio.Event()
        asked = len(fake.requests) + 1
        followed = await agent.send("a long answer", "m4")
        await fake.wait_for_requests(asked)
        relay = RelayInput(message_id="m4", reply_to="gateway-elsewhere:0")
        await within(agent.handle.signal(Signal.RELAY_TURN, relay))
        await agent.control(Command.CANCEL)
        await within(followed.result())
        asked = len(fake.requests) + 1
        withdrawn = await agent.send("another long one", "m5")
        await fake.wait_for_requests(asked)
        await _withdraw(agent, "m5")
        await within(withdrawn.result())
        fake.gate = None
        child = SubAgentInput(agent_id="helper-1")
        await within(agent.handle.signal(Signal.ADD_SUB_AGENT, child))
        await agent.edit(EditInput(goal="Help with more tests."))
        run = RunInput(run_id="r1", instructions="Say done.")
        await within(agent.handle.execute_update(Update.START_RUN, run, result_type=str))
        await agent.wait_turn("r1")
        await agent.delete()
        await agent.result()
        history = await agent.handle.fetch_history()
        return history.to_json_dict()


async def few_waiters() -> dict[str, object]:
    """Seven messages sent while a turn is held: the agent lets four callers wait and answers
    the others `later`; they poll and collect their turns once ended. Recorded in-process."""
    async with local_environment() as env, running_harness(env) as harness:
        fake = harness.fake
        fake.gate = asyncio.Event()
        agent = await harness.create_agent()
        sent = [await agent.send(f"message {i}", f"m{i}") for i in range(7)]
        await eventually(lambda: bool(fake.requests), "the first turn to start")
        fake.gate.set()
        for message in sent:
            await within(message.result())
        history = await agent.handle.fetch_history()
        return history.to_json_dict()


async def _withdraw(agent: Agent, message_id: str) -> None:
    withdrawal = WithdrawInput(message_id=message_id)
    await within(agent.handle.execute_update(Update.WITHDRAW_MESSAGE, withdrawal, result_type=str))


async def upgrade() -> dict[str, object]:
    """The upgrade signal arriving mid-turn: the agent continues as new once the turn has ended.
    The first run's history, which has the signal and the continue-as-new."""
    async with local_environment() as env, running_harness(env) as harness:
        fake = harness.fake
        fake.gate = asyncio.Event()
        agent = await harness.create_agent()
        turn = await agent.send("hello", "m1")
        await fake.wait_for_requests(1)
        await agent.handle.signal(Signal.UPGRADE)
        fake.gate.set()
        await within(turn.result())

        async def continued() -> bool:
            return (await agent.handle.describe()).run_id != agent.first_run_id

        await eventually(continued, "the agent to continue as new")
        first = harness.client.get_workflow_handle(agent.workflow_id, run_id=agent.first_run_id)
        return (await first.fetch_history()).to_json_dict()


async def versioned() -> dict[str, object]:
    """A pinned agent (`engram worker --deployment-name --build-id`) whose deployment gets a new
    current version: its next turn runs on the old one, then it continues as new onto the new
    one. The first run's history: its tasks on v1, the changed target, the continue-as-new."""
    async with local_environment() as env:
        client = env.client
        name, queue = f"engram-{uuid.uuid4().hex[:12]}", f"engram-test-{uuid.uuid4()}"
        v1 = Harness(client, FakeActivities(), queue)
        v2 = Harness(client, FakeActivities(), queue)
        async with v1.worker(deployment(name, "v1")):
            await set_current(client, name, "v1", wait=20)
            agent = await v1.create_agent()
            await agent.ask("hello", "m1")
            async with v2.worker(deployment(name, "v2")):
                await set_current(client, name, "v2", wait=20)
                await agent.ask("still there?", "m2")

                async def continued() -> bool:
                    return (await agent.handle.describe()).run_id != agent.first_run_id

                await eventually(continued, "the agent to continue as new onto v2")
                first = client.get_workflow_handle(agent.workflow_id, run_id=agent.first_run_id)
                history = (await first.fetch_history()).to_json_dict()
                for harness in (v1, v2):
                    await harness.close()
                return history


async def tool_rounds(tools: list[AgentTool]) -> dict[str, object]:
    """A model that always calls `remember`: the turn makes as many rounds
    as MAX_TOOL_ROUNDS (MAX_TOOL_ROUNDS_WITH_TOOLS for an agent with tools), then one LLM call
    without tools. A history that fails to replay if the limit changes."""
    remember = ToolCall(call_id="r", name="remember", arguments='{"name": "n", "content": "v"}')
    async with local_environment() as env, running_harness(env) as harness:
        # Even when offered none: replay then fails for a limit raised as for one lowered.
        harness.fake.reply = lambda request: LLMResult(
            outcome=TurnOutcome.COMPLETED, pieces=[], tool_calls=[remember]
        )
        agent = await harness.create_agent(tools=tools)
        await agent.ask("keep notes", "m1")
        await eventually(agent.is_quiet, "the turn's upkeep to end")
        return (await agent.handle.fetch_history()).to_json_dict()


async def budgets() -> dict[str, object]:
    """Turns of a model without a tokenizer (counted by the estimate) in a small context budget,
    with long replies: compaction and archiving start at turns that the token estimates and
    EVENTS_IN_STATE decide. A history that fails to replay if they change by much."""
    async with local_environment() as env, running_harness(env) as harness:
        harness.fake.reply = lambda request: "word " * 60 + "."
        agent = await harness.create_agent(model="test-model", max_context_tokens=600)
        for i in range(12):
            await agent.ask(f"Turn {i}: " + "tell me more " * (3 + i), f"m{i}")
            await eventually(agent.is_quiet, "the turn's upkeep to end")
        return (await agent.handle.fetch_history()).to_json_dict()


_IDLE_TOOL = AgentTool(
    name="work",
    kind=ToolKind.WORKER,
    function={"type": "function", "function": {"name": "work", "parameters": {}}},
)


async def json_budget() -> dict[str, object]:
    """The model calls `remember` with arguments nested 40 deep, past the budget but not deep
    enough to fail to parse: the call is refused with a reason (behind the json-budget patch),
    and the turn and the agent go on. In-process."""
    deep = '{"name": "n", "content": ' + "[" * 40 + "]" * 40 + "}"
    call = ToolCall(call_id="deep", name="remember", arguments=deep)
    async with local_environment() as env, running_harness(env) as harness:
        harness.fake.reply = lambda request: (
            "Fine."
            if request.tool_rounds
            else LLMResult(outcome=TurnOutcome.COMPLETED, pieces=[], tool_calls=[call])
        )
        agent = await harness.create_agent()
        await agent.ask("keep this", "m1")
        await eventually(agent.is_quiet, "the turn's upkeep to end")
        return (await agent.handle.fetch_history()).to_json_dict()


async def failover() -> dict[str, object]:
    """An agent with fallback models (set at creation, changed by an edit): its requests carry
    them; a call out of quota has the turn wait on a timer (waiting_for_quota), then call again;
    a second quota wait is cancelled. In-process."""
    async with local_environment() as env, running_harness(env) as harness:
        fake = harness.fake
        quota = failed([], "LLM_HTTP_429", "out of quota")
        quota.quota_wait = 1.0
        replies = [quota]
        fake.reply = lambda request: replies.pop() if replies else echo(request)
        agent = await harness.create_agent(config={"fallbackModels": ["b/test-model"]})
        await agent.ask("hello", "m1")
        await agent.edit(EditInput(fallback_models=["c/other"]))
        quota.quota_wait = 3600.0
        replies.append(quota)
        waiting = await agent.send("wait for it", "m2")

        async def waiting_for_quota() -> bool:
            return (await agent.describe()).status == AgentStatus.WAITING_FOR_QUOTA

        await eventually(waiting_for_quota, "the wait for quota")
        await agent.control(Command.CANCEL)
        await within(waiting.result())
        await agent.ask("and now?", "m3")
        return (await agent.handle.fetch_history()).to_json_dict()


async def spending() -> dict[str, object]:
    """Both budgets: an agent with max_cost_usd whose call the worker refuses (BUDGET_EXHAUSTED)
    waits until an Edit raises it; a call refused for its tenant's daily budget
    (TENANT_BUDGET_EXHAUSTED) waits on the next-UTC-day timer until a resume, then again until a
    cancel. In-process."""
    async with local_environment() as env, running_harness(env) as harness:
        fake = harness.fake
        over = failed([], ErrorCode.BUDGET_EXHAUSTED, "the next call could cost up to $0.04")
        tenant = failed([], ErrorCode.TENANT_BUDGET_EXHAUSTED, "tenant acme has spent $1.00")
        replies: list[LLMResult] = [over]
        fake.reply = lambda request: replies.pop(0) if replies else echo(request)
        agent = await harness.create_agent(config={"maxCostUsd": 0.01})

        async def exhausted() -> bool:
            return (await agent.describe()).status == AgentStatus.BUDGET_EXHAUSTED

        first = await agent.send("hello", "m1")
        await eventually(exhausted, "the agent's budget to be exhausted")
        await agent.edit(EditInput(max_cost_usd=10.0))
        await within(first.result())
        replies.append(tenant)
        second = await agent.send("and again", "m2")
        await eventually(exhausted, "the tenant's budget to be exhausted")
        await agent.control(Command.RESUME)
        await within(second.result())
        replies.append(tenant)
        third = await agent.send("once more", "m3")
        await eventually(exhausted, "the tenant's budget to be exhausted again")
        await agent.control(Command.CANCEL)
        await within(third.result())
        await agent.ask("and now?", "m4")
        return (await agent.handle.fetch_history()).to_json_dict()


# Recorded without an engine: name -> what records it.
IN_PROCESS: dict[str, Callable[[], Coroutine[Any, Any, dict[str, object]]]] = {
    "cancel-before-tool": cancel_before_tool,
    "handlers": handlers,
    "few-waiters": few_waiters,
    "upgrade": upgrade,
    "tool-rounds": lambda: tool_rounds([]),
    "tool-rounds-with-tools": lambda: tool_rounds([_IDLE_TOOL]),
    "budgets": budgets,
    "json-budget": json_budget,
    "failover": failover,
    "spending": spending,
    "versioned": versioned,
}


def record_on_engines(names: list[str], version: str) -> None:
    """Run the named SCENARIOS on engines and write the histories they leave."""
    llm = FakeLLM().start()
    with tempfile.TemporaryDirectory() as data:
        engine = Engine(
            Path(data),
            llm.url,
            ENGRAM_TOOLS=TEST_TOOLS,
            ENGRAM_TEST_EFFECTS=str(Path(data) / "effects.log"),
            ENGRAM_SCHEDULE_MIN_EVERY="1",  # wake-ups within the recording's seconds
        ).start()
        try:
            for name in names:
                used = engine
                if name in OWN_ENGINE:
                    used = Engine(Path(data) / name, llm.url, extra_args=OWN_ENGINE[name]).start()
                try:
                    for suffix, made in SCENARIOS[name](used, llm).items():
                        kind, workflow_id = (
                            ("wake-up", made)
                            if name == "wake-up"
                            else ("agent", WORKFLOW_ID_PREFIX + made)
                        )
                        first_run = name in OWN_ENGINE
                        history = asyncio.run(fetch(used, workflow_id, first_run=first_run))
                        target = HERE / f"{kind}-v{version}{suffix}.json"
                        target.write_text(json.dumps(history, indent=1) + "\n")
                        print(f"wrote {target}")
                finally:
                    if used is not engine:
                        used.stop()
        finally:
            engine.stop()


def main(names: list[str]) -> None:
    version = ""
    if names[:1] == ["--version"]:
        version, names = names[1], names[2:]
    unknown = set(names) - set(SCENARIOS) - set(IN_PROCESS)
    if unknown:
        raise SystemExit(
            f"no scenario {', '.join(sorted(unknown))}; there are "
            + ", ".join([*SCENARIOS, *IN_PROCESS])
        )
    pyproject = tomllib.loads((HERE.parent.parent / "pyproject.toml").read_text())
    version = version or pyproject["project"]["version"]
    on_engines = [n for n in SCENARIOS if not names or n in names]
    if on_engines:
        record_on_engines(on_engines, version)
    for name, record in IN_PROCESS.items():
        if not names or name in names:
            target = HERE / f"agent-v{version}-{name}.json"
            target.write_text(json.dumps(asyncio.run(record()), indent=1) + "\n")
            print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])

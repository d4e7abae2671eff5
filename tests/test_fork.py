"""Fork and rewind: an agent's memory at a point of its transcript, as a new agent or in place,
with nothing re-run (no model call, no tool call). On the real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from engram.v1 import agent_pb2, agent_pb2_grpc
from engram.vocabulary import EventKind, TurnOutcome
from engram.workflows import fork
from engram.workflows.types import AgentSpec, AgentState, Event, MemoryNote, Turn
from tests.conftest import chat, chat_in_background, create_agent, finals, without_time
from tests.effect_tools import effects
from tests.engine import Engine
from tests.fake_llm import FakeLLM, note_taker
from tests.test_tool_use import approve, waiting_call

ENGRAM = str(Path(sys.executable).with_name("engram"))


def history(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> list[tuple[str, str]]:
    turns = stub.GetHistory(agent_pb2.GetHistoryRequest(agent_id=agent_id)).turns
    return [(t.user, t.reply) for t in turns]


def replay(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str) -> list[agent_pb2.ServerMessage]:
    """Every message, without its time or agent id (a fork's are its own)."""
    request = agent_pb2.ReplayRequest(agent_id=agent_id, include_history=True)
    messages = [without_time(m) for m in stub.Replay(request, timeout=30)]
    for m in messages:
        m.ClearField("agent_id")
    return messages


def message(n: int) -> str:
    if n == 3:
        return "remember early: kept before the point"
    if n == 5:
        return 'call record_effect {"label": "fork-effect"}'
    if n == 12:
        return "remember late: written after the point"
    return f"turn {n} says marker-{n}"


def test_fork_at_turn_7_of_20_keeps_7_turns_and_runs_nothing(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM, effects_log: Path
) -> None:
    llm.reply = note_taker
    # A small budget: the agent compacts (and archives turns) well before turn 20.
    original = create_agent(
        stub,
        tools=[agent_pb2.Tool(name="record_effect")],
        config=agent_pb2.AgentConfig(max_context_tokens=400),
    )
    ends = [chat(stub, original, message(n))[-1].sequence_id for n in range(1, 21)]
    before = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=original))
    original_history, original_replay = history(stub, original), replay(stub, original)
    requests, applied = len(llm.requests), effects(original, effects_log)
    assert applied == ["fork-effect"]
    assert before.stats.tool_calls == 3  # two notes and the effect
    # The fork point is before compactions: turns 8-20 were folded into the summary meanwhile.
    summaries = [r for r in llm.requests if "Summary so far:" in json.dumps(r["messages"])]
    assert any("marker-8" in json.dumps(r["messages"]) for r in summaries)

    forked = stub.ForkAgent(agent_pb2.ForkAgentRequest(agent_id=original, at_sequence=ends[6]))
    fork_id = forked.agent_id

    # Nothing ran: no model request, no tool effect, for either agent.
    assert len(llm.requests) == requests
    assert effects(fork_id, effects_log) == [] and effects(original, effects_log) == applied
    # The fork's transcript is the first 7 turns, event for event.
    assert history(stub, fork_id) == original_history[:7]
    fork_replay = replay(stub, fork_id)
    assert fork_replay == [m for m in original_replay if m.sequence_id <= ends[6]]
    agent = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=fork_id))
    assert (agent.forked_from, agent.fork_sequence) == (original, ends[6])
    assert agent.status == "idle" and agent.last_sequence_id == ends[6]
    assert {n.name: n.content for n in agent.memory} == {"early": "kept before the point"}
    assert agent.stats.total_steps == 7 and agent.stats.tool_calls == 2

    # Its next prompt holds nothing of turns 8-20.
    chat(stub, fork_id, "what do you remember?")
    prompt = json.dumps(llm.requests_for("what do you remember?")[-1]["messages"])
    assert "marker-6" in prompt or "marker-7" in prompt
    for n in range(8, 21):
        assert f"marker-{n}" not in prompt
    assert "written after the point" not in prompt

    # The original is unchanged.
    assert history(stub, original) == original_history
    assert replay(stub, original) == original_replay
    after = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=original))
    assert after.last_sequence_id == before.last_sequence_id
    assert after.memory == before.memory and after.stats == before.stats


def test_rewind_forgets_the_tail_and_keeps_it_as_a_branch(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub)
    ends = [chat(stub, agent_id, message(n))[-1].sequence_id for n in range(6, 14)]
    whole_history, whole_replay = history(stub, agent_id), replay(stub, agent_id)

    rewound = stub.RewindAgent(agent_pb2.RewindAgentRequest(agent_id=agent_id, to_sequence=ends[1]))

    assert history(stub, agent_id) == whole_history[:2]
    assert replay(stub, agent_id) == [m for m in whole_replay if m.sequence_id <= ends[1]]
    assert stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id)).memory == []
    # The forgotten turns stay readable, in the branch.
    branch = rewound.branch_agent_id
    assert history(stub, branch) == whole_history and replay(stub, branch) == whole_replay
    shown = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=branch))
    assert (shown.forked_from, shown.fork_sequence) == (agent_id, ends[-1])

    # The agent goes on from the point; sequence ids are never reused.
    seen = chat(stub, agent_id, "and now?")
    assert seen[0].sequence_id > ends[-1]
    prompt = json.dumps(llm.requests_for("and now?")[-1]["messages"])
    assert "marker-7" in prompt and "marker-8" not in prompt and "after the point" not in prompt
    assert [u for u, _ in history(stub, agent_id)][-1] == "and now?"


def test_a_point_inside_a_turn_is_refused(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub)
    first = chat(stub, agent_id, "remember a: b")
    chat(stub, agent_id, "hello")
    for at in (first[0].sequence_id, first[-2].sequence_id):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ForkAgent(agent_pb2.ForkAgentRequest(agent_id=agent_id, at_sequence=at))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as refused:
            stub.RewindAgent(agent_pb2.RewindAgentRequest(agent_id=agent_id, to_sequence=at))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as beyond:
        stub.ForkAgent(agent_pb2.ForkAgentRequest(agent_id=agent_id, at_sequence=10_000))
    assert beyond.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Nothing changed; the end of a turn is a good point.
    assert len(history(stub, agent_id)) == 2
    at_end = stub.ForkAgent(
        agent_pb2.ForkAgentRequest(agent_id=agent_id, at_sequence=first[-1].sequence_id)
    )
    assert len(history(stub, at_end.agent_id)) == 1


def test_while_a_tool_waits_for_approval_only_points_before_its_turn_fork(
    stub: agent_pb2_grpc.AgentServiceStub, llm: FakeLLM, effects_log: Path
) -> None:
    llm.reply = note_taker
    agent_id = create_agent(stub, tools=[agent_pb2.Tool(name="deploy")])
    before = chat(stub, agent_id, "remember service: api")[-1].sequence_id
    waits = chat_in_background(stub, agent_id, 'call deploy {"service": "api"}')
    call = waiting_call(waits)
    waiting = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=agent_id))
    assert [p.call_id for p in waiting.pending_calls] == [call.call_id]
    # Inside the waiting turn, at its call or at its newest message: no memory to rebuild there,
    # and not snapped to a point that has one.
    for at in (before + 1, waits.messages[-1].sequence_id, waiting.last_sequence_id):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ForkAgent(agent_pb2.ForkAgentRequest(agent_id=agent_id, at_sequence=at))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "has not ended" in (refused.value.details() or "")
    # A rewind, even to before the turn, waits for the agent to be idle.
    with pytest.raises(grpc.RpcError) as busy:
        stub.RewindAgent(agent_pb2.RewindAgentRequest(agent_id=agent_id, to_sequence=before))
    assert busy.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "busy" in (busy.value.details() or "")
    # Before the turn is a point: the fork has the note and nothing of the waiting call.
    fork_id = stub.ForkAgent(
        agent_pb2.ForkAgentRequest(agent_id=agent_id, at_sequence=before)
    ).agent_id
    forked = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=fork_id))
    assert forked.status == "idle" and not forked.pending_calls
    assert [(n.name, n.content) for n in forked.memory] == [("service", "api")]
    assert history(stub, fork_id) == history(stub, agent_id)[:1]

    # The original goes on as if nothing happened; its call runs once, the fork's never.
    approve(stub, agent_id, call_id=call.call_id, approved=True)
    assert waits.done.wait(30) and finals(waits.messages) == ["Done: deployed api: done."]
    assert effects(agent_id, effects_log) == ["deployed api"]
    assert effects(fork_id, effects_log) == []
    assert finals(chat(stub, fork_id, "and now?")) == ["Sure."]
    assert effects(fork_id, effects_log) == []


@pytest.mark.chaos
def test_a_fork_and_its_original_survive_sigkill_of_the_whole_engine(
    tmp_path: Path, llm: FakeLLM
) -> None:
    llm.reply = note_taker
    engine = Engine(tmp_path / "data", llm.url).start()
    try:
        stub = engine.stub()
        original = create_agent(stub)
        ends = [chat(stub, original, message(n))[-1].sequence_id for n in range(1, 6)]
        fork_id = stub.ForkAgent(
            agent_pb2.ForkAgentRequest(agent_id=original, at_sequence=ends[2])
        ).agent_id
        chat(stub, fork_id, "the fork's own turn")
        before = {a: (history(stub, a), replay(stub, a)) for a in (original, fork_id)}
        engine.kill()  # engine, worker, gateway and Temporal server, all at once

        engine.start()
        stub = engine.stub()
        for agent_id, (turns, messages) in before.items():
            assert history(stub, agent_id) == turns
            assert replay(stub, agent_id) == messages
            again = chat(stub, agent_id, f"still there, {agent_id}?")
            assert finals(again) == ["Sure."]
            assert again[0].sequence_id == messages[-1].sequence_id + 1
        shown = stub.GetAgent(agent_pb2.GetAgentRequest(agent_id=fork_id))
        assert (shown.forked_from, shown.fork_sequence) == (original, ends[2])
        assert [(n.name, n.content) for n in shown.memory] == [("early", "kept before the point")]
        assert [u for u, _ in history(stub, fork_id)] == [
            *(message(n) for n in range(1, 4)),
            "the fork's own turn",
            f"still there, {fork_id}?",
        ]
        # The restarted engine still forks, from either.
        again = stub.ForkAgent(agent_pb2.ForkAgentRequest(agent_id=fork_id, at_sequence=ends[0]))
        assert len(history(stub, again.agent_id)) == 1
    finally:
        engine.stop()


# --- the plan, on its own ----------------------------------------------------------------------


def turn(n: int, first: int, last: int, summary_after: str = "") -> Turn:
    return Turn(
        f"m{n}", f"u{n}", first_seq=first, last_seq=last, outcome=TurnOutcome.COMPLETED,
        summary_after=summary_after,
    )  # fmt: skip


def test_an_old_point_takes_the_newest_summary_made_before_it() -> None:
    turns = [turn(0, 1, 3), turn(1, 4, 6, "summary of 0-1"), turn(2, 7, 9), turn(3, 10, 12)]
    state = AgentState(AgentSpec("a", "g", "m"), 0.0, archived_turns=4, summary="all four")
    state.turns = []
    rebuilt = fork.rebuild(state, turns, [], at=9)
    assert (rebuilt.summary, rebuilt.archived_turns) == ("summary of 0-1", 2)
    assert [t.message_id for t in rebuilt.turns] == ["m2"]
    # No summary made before the point: none, and every kept turn verbatim.
    early = fork.rebuild(state, turns, [], at=3)
    assert (early.summary, early.archived_turns, len(early.turns)) == ("", 0, 1)
    # A point after the newest compaction keeps the current summary.
    state.archived_turns = 2
    assert fork.rebuild(state, turns, [], at=12).summary == "all four"


def test_notes_are_replayed_up_to_the_point() -> None:
    def call(seq: int, call_id: str, name: str, content: str) -> Event:
        arguments = json.dumps({"name": name, "content": content})
        return Event(seq=seq, kind=EventKind.TOOL_CALL, code="remember", text=arguments,
                     call_id=call_id)  # fmt: skip

    events = [call(2, "c1", "x", "one"), call(5, "c2", "x", "two"), call(8, "c3", "y", "late")]
    current = [MemoryNote("x", "two"), MemoryNote("y", "late"), MemoryNote("client", "edit")]
    notes = fork.notes_at(current, events, at=4)
    assert [(n.name, n.content) for n in notes] == [("client", "edit"), ("x", "one")]


def test_the_terminal_forks_shows_and_rewinds(
    stub: agent_pb2_grpc.AgentServiceStub, engine: Engine
) -> None:
    agent_id = create_agent(stub)
    ends = [chat(stub, agent_id, f"terminal turn {n}")[-1].sequence_id for n in range(3)]

    def run(*args: str) -> str:
        done = subprocess.run(
            [ENGRAM, "agents", *args, "--address", engine.address],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    forked = run("fork", agent_id, "--at", str(ends[0])).split()[-1]
    assert len(history(stub, forked)) == 1
    assert f"{agent_id} after message {ends[0]}" in run("show", forked)
    branch = run("rewind", agent_id, "--to", str(ends[1])).split()[-1]
    assert len(history(stub, agent_id)) == 2 and len(history(stub, branch)) == 3

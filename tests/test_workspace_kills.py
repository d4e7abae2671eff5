"""Workers SIGKILLed inside `write_file`, `edit_file` and `run_script` (and the calls a script
makes), at points chosen by a seeded random draw: every effect is in the tree and the git log
exactly once, and every turn ends with its answer.

Each call is held at its point (tests/kill_point_tools.py) until the test kills the worker, so the
kill lands where it was meant to, not where the timing happens to fall. Calls of several agents
are held at once and die in one kill: a lost worker is only noticed at its heartbeat timeout, and
waiting one per point would take minutes.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.cluster import Cluster
from tests.conftest import create_agent, finals, user_message
from tests.fake_llm import FakeLLM, note_taker

# Where tests/kill_point_tools.py can hold a call: its lock taken and the tree restored; the
# change applied but not committed; staged; committed but the result not returned; a script
# started, answered one call from its journal, or stopped at a call to make.
POINTS = {
    "write_file": ["restored", "applied", "staged", "committed"],
    "edit_file": ["restored", "applied", "staged", "committed"],
    "run_script": ["script-started", "script-replayed", "script-stopped", "applied", "committed"],
}

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
]

SEED = 20261205
KILLS = 10
# Calls held at once: sync tools run on the worker's small thread pool.
WAVE = 5
SCRIPT = (
    'tools.write_file(path="s.txt", content="a\\n")\n'
    'tools.edit_file(path="s.txt", old_text="a", new_text="b")\n'
    'print(open("s.txt").read().strip())\n'
)
CALLS = {
    "write_file": {"path": "f.txt", "content": "v1\n"},
    "edit_file": {"path": "e.txt", "old_text": "old", "new_text": "new"},
    "run_script": {"script": SCRIPT},
}
LOGS = {
    "write_file": ["write_file f.txt", "Workspace created"],
    "edit_file": ["edit_file e.txt", "write_file e.txt", "Workspace created"],
    "run_script": ["edit_file s.txt", "write_file s.txt", "Workspace created"],
}
TREES = {
    "write_file": {"f.txt": "v1\n"},
    "edit_file": {"e.txt": "new\n"},
    "run_script": {"s.txt": "b\n"},
}


def say(stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, text: str, message_id: str) -> str:
    """The turn's answer; the message resent with its id while the engine is unreachable."""
    deadline = time.monotonic() + 120
    while True:
        try:
            messages = list(
                stub.Chat(iter([user_message(agent_id, text, message_id)]), timeout=120)
            )
            answer = finals(messages)
            assert len(answer) == 1, messages
            return answer[0]
        except grpc.RpcError:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo}", *args], capture_output=True, text=True, check=True
    ).stdout


def test_kills_inside_workspace_tools_leave_each_effect_once(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = note_taker
    rng = random.Random(SEED)
    tools = list(CALLS)
    # Each tool's points in a shuffled order, so ten kills reach as many different ones as fit.
    shuffled = {tool: rng.sample(points, len(points)) for tool, points in POINTS.items()}
    plan_points = [
        (tools[i % 3], shuffled[tools[i % 3]][(i // 3) % len(POINTS[tools[i % 3]])])
        for i in range(KILLS)
    ]
    plan_file, markers = tmp_path / "plan.json", tmp_path / "held"
    plan_file.write_text("{}")
    markers.mkdir()
    cluster = Cluster(
        tmp_path,
        llm.url,
        ENGRAM_TOOLS="tests.kill_point_tools",
        ENGRAM_WORKSPACE_DIR=str(tmp_path / "workspaces"),
        ENGRAM_TEST_KILL_PLAN=str(plan_file),
        ENGRAM_TEST_KILL_DIR=str(markers),
    )
    try:
        cluster.start_temporal()
        worker = cluster.start_worker()
        _, address = cluster.start_gateway()
        stub = cluster.stub(address)
        tool_list = [agent_pb2.Tool(name=n) for n in ("write_file", "edit_file", "run_script")]
        agents = [create_agent(stub, tools=tool_list) for _ in plan_points]
        for agent, (tool, _) in zip(agents, plan_points, strict=True):
            if tool == "edit_file":
                setup = json.dumps({"path": "e.txt", "content": "old\n"})
                say(stub, agent, f"call write_file {setup}", f"setup-{agent}")
        plan = {agent: point for agent, (_, point) in zip(agents, plan_points, strict=True)}
        plan_file.write_text(json.dumps(plan))
        answers: dict[str, str] = {}
        for start in range(0, KILLS, WAVE):
            wave = list(zip(agents, plan_points, strict=True))[start : start + WAVE]
            threads = []
            for agent, (tool, _) in wave:
                text = f"call {tool} {json.dumps(CALLS[tool])}"

                def run(agent: str = agent, text: str = text) -> None:
                    answers[agent] = say(stub, agent, text, f"work-{agent}")

                threads.append(threading.Thread(target=run, daemon=True))
                threads[-1].start()
            deadline = time.monotonic() + 60
            while not all((markers / agent).exists() for agent, _ in wave):
                assert time.monotonic() < deadline, [
                    a for a, _ in wave if not (markers / a).exists()
                ]
                time.sleep(0.05)
            worker.kill()
            worker.wait()
            worker = cluster.start_worker()
            for thread in threads:
                thread.join(120)

        for agent, (tool, point) in zip(agents, plan_points, strict=True):
            where = (tool, point, agent)
            assert (markers / agent).read_text() == point, where
            told = json.loads(answers[agent].removeprefix("Done: ").removesuffix("."))
            repo = tmp_path / "workspaces" / "_default" / agent / "repo.git"
            assert git(repo, "log", "--format=%s").splitlines() == LOGS[tool], where
            for path, content in TREES[tool].items():
                assert git(repo, "show", f"HEAD:{path}") == content, where
            tree = tmp_path / "workspaces" / "_default" / agent / "tree"
            assert sorted(p.name for p in tree.iterdir()) == sorted(TREES[tool]), where
            if tool == "run_script":
                assert told["exit_code"] == 0 and told["output"] == "b\n", where
            else:
                assert told["commit"] == git(repo, "rev-parse", "HEAD").strip(), where
    finally:
        cluster.stop()

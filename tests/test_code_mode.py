"""Code mode (`run_script`) on the real engine: a script's tool calls are steps of their own,
each under its tool's approval policy, and a denied one raises inside the script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engram.v1 import agent_pb2
from tests.conftest import chat, create_agent, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM, note_taker
from tests.record_histories import approve_when_asked

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

SCRIPT = """
print("before:", sorted(__import__("os").listdir(".")))
done = tools.write_file(path="notes.txt", content="one\\n")
print("wrote", len(done["commit"]))
try:
    tools.edit_file(path="notes.txt", old_text="one", new_text="two")
except tools.ToolError as err:
    print("refused:", err)
print("now:", open("notes.txt").read().strip())
print(tools.read_file(path="notes.txt")["content"].strip())
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo}", *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.e2e
def test_a_scripts_calls_are_steps_and_a_denial_raises_in_it(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = note_taker
    data = tmp_path / "data"
    engine = Engine(data, llm.url, ENGRAM_TOOLS="engram.tools.workspace").start()
    try:
        stub = engine.stub()
        agent = create_agent(
            stub,
            tools=[
                agent_pb2.Tool(name="run_script"),
                agent_pb2.Tool(name="write_file"),
                agent_pb2.Tool(name="read_file"),
                agent_pb2.Tool(name="edit_file", requires_confirmation=True),
            ],
        )
        approve_when_asked(stub, agent, approved=False, reason="not now")
        messages = chat(stub, agent, "call run_script " + json.dumps({"script": SCRIPT}))
        answer = finals(messages)
        result = json.loads(answer[0].removeprefix("Done: ").removesuffix("."))
        assert result["exit_code"] == 0, result
        assert result["calls"] == 3
        assert result["output"].splitlines() == [
            "before: []",
            "wrote 40",
            "refused: error: denied by the user: not now",
            "now: one",
            "one",
        ]
        # Each call the script made was a tool call of its own, the model's call around them.
        calls = [m.tool_call.tool_name for m in messages if m.HasField("tool_call")]
        assert calls == ["run_script", "write_file", "edit_file", "read_file"]
        denied = [m for m in messages if m.HasField("tool_result") and m.tool_result.is_error]
        assert len(denied) == 1 and "not now" in denied[0].tool_result.output
        repo = data / "workspaces" / "_default" / agent / "repo.git"
        assert git(repo, "log", "--format=%s").splitlines() == [
            "write_file notes.txt",
            "Workspace created",
        ]
        # A script changes the workspace only through its tools.
        sneaky = "open('x.txt', 'w').write('x')"
        told = finals(chat(stub, agent, "call run_script " + json.dumps({"script": sneaky})))
        assert "Read-only file system" in told[0] and '"exit_code":1' in told[0]
        assert "line 77" not in told[0] and '<script>\\", line 1' in told[0]
        patch = subprocess.run(
            [sys.executable, "-m", "engram.cli", "workspace", "export", agent, "--patch"],
            capture_output=True,
            text=True,
            check=True,
            env={"ENGRAM_WORKSPACE_DIR": str(data / "workspaces"), "PATH": "/usr/bin:/bin"},
        ).stdout
        assert "+one" in patch and "x.txt" not in patch
    finally:
        engine.stop()

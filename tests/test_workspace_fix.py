"""An autonomous run fixes a failing test in a small project (tests/sample_project) imported into
its workspace: the scripted model runs the tests, reads the code, edits it, runs the tests again
in the sandbox, commits and finishes; the exported patch applies to the original project."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from engram.v1 import agent_pb2
from tests.conftest import Reader, create_agent, finals
from tests.engine import Engine
from tests.fake_llm import FakeLLM, Reply, Script, ToolUse

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap"),
]

SAMPLE = Path(__file__).parent / "sample_project"
TESTS = json.dumps({"command": "python3 -m unittest -v 2>&1"})
BUGGY = "return price_cents * (100 - percent) // 100"
FIXED = "return (price_cents * (100 - percent) + 50) // 100"


def result(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The last tool call's result, as the model was shown it."""
    last = messages[-1]
    assert last["role"] == "tool", last
    parsed: dict[str, Any] = json.loads(last["content"])
    return parsed


def give_up(why: str) -> Reply:
    return ToolUse([("finish", json.dumps({"answer": f"gave up: {why}"}))])


def after_first_run(messages: list[dict[str, Any]]) -> Reply:
    ran = result(messages)
    if ran["exit_code"] == 0 or "FAIL: test_a_half_cent_rounds_up" not in ran["output"]:
        return give_up(f"expected one failing test, got {ran}")
    return ToolUse([("read_file", json.dumps({"path": "discount.py"}))])


def after_reading(messages: list[dict[str, Any]]) -> Reply:
    content = result(messages)["content"]
    if BUGGY not in content:
        return give_up("the bug is not where expected")
    edit = {"path": "discount.py", "old_text": BUGGY, "new_text": FIXED}
    return ToolUse([("edit_file", json.dumps(edit))], text="It floors; it must round. ")


def after_edit(messages: list[dict[str, Any]]) -> Reply:
    if result(messages).get("replaced") != 1:
        return give_up(f"the edit failed: {messages[-1]['content']}")
    return ToolUse([("run_command", TESTS)])


def after_second_run(messages: list[dict[str, Any]]) -> Reply:
    ran = result(messages)
    if ran["exit_code"] != 0:
        return give_up(f"the tests still fail: {ran['output']}")
    return ToolUse([("git_commit", json.dumps({"message": "Round discounts to the nearest cent"}))])


def after_commit(messages: list[dict[str, Any]]) -> Reply:
    commit = result(messages)["commit"]
    answer = f"Fixed: discounted() rounds half a cent up; all tests pass (commit {commit[:12]})."
    return ToolUse([("finish", json.dumps({"answer": answer}))])


def test_an_autonomous_run_fixes_a_failing_test(tmp_path: Path, llm: FakeLLM) -> None:
    data = tmp_path / "data"
    workspaces = data / "workspaces"
    engine = Engine(data, llm.url, ENGRAM_TOOLS="engram.tools.workspace").start()
    cli_env = {"ENGRAM_WORKSPACE_DIR": str(workspaces), "PATH": "/usr/bin:/bin"}
    try:
        stub = engine.stub()
        tools = ["list_files", "read_file", "edit_file", "run_command", "git_commit", "git_diff"]
        agent = create_agent(
            stub,
            goal="Keep the project's tests passing.",
            tools=[agent_pb2.Tool(name=name) for name in tools],
        )
        subprocess.run(
            [sys.executable, "-m", "engram.cli", "workspace", "import", agent, str(SAMPLE)],
            check=True,
            capture_output=True,
            env=cli_env,
        )
        llm.reply = Script(
            ToolUse([("run_command", TESTS)], text="First, the tests. "),
            after_first_run,
            after_reading,
            after_edit,
            after_second_run,
            after_commit,
        )
        run = agent_pb2.ClientMessage(
            agent_id=agent,
            message_id="fix-1",
            run=agent_pb2.Run(instructions="A test fails: make it pass, then commit."),
        )
        reader = Reader(stub.Chat(iter([run]), timeout=120))
        assert reader.done.wait(120) and reader.status == grpc.StatusCode.OK
        answer = finals(reader.messages)
        assert len(answer) == 1 and answer[0].startswith("Fixed:"), answer

        repo = workspaces / "_default" / agent / "repo.git"
        subjects = subprocess.run(
            ["git", f"--git-dir={repo}", "log", "--format=%s", "engram-base..HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert subjects == [
            "Round discounts to the nearest cent",
            "run_command python3 -m unittest -v 2>&1",
            "edit_file discount.py",
            "run_command python3 -m unittest -v 2>&1",
        ]
        patch = subprocess.run(
            [sys.executable, "-m", "engram.cli", "workspace", "export", agent, "--patch"],
            capture_output=True,
            text=True,
            check=True,
            env=cli_env,
        ).stdout
        assert "+++ b/discount.py" in patch and patch.count("+++ ") == 1, patch
        original = tmp_path / "original"
        shutil.copytree(SAMPLE, original, ignore=shutil.ignore_patterns("__pycache__"))
        (tmp_path / "fix.patch").write_text(patch)
        for check in (["--check"], []):
            subprocess.run(
                ["git", "apply", *check, str(tmp_path / "fix.patch")], cwd=original, check=True
            )
        passed = subprocess.run(
            ["python3", "-B", "-m", "unittest", "-q"],
            cwd=original,
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert passed.returncode == 0, passed.stderr
    finally:
        engine.stop()

"""The workspace tools on the real engine: files that outlive a SIGKILL of everything, commands in
a sandbox that holds, a write retried after a crash that is committed once, and the export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from engram.tools import ToolContext, ToolError, workspace
from engram.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import chat, create_agent, finals, user_message
from tests.engine import Engine
from tests.fake_llm import FakeLLM, note_taker

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

TOOLS = ["write_file", "read_file", "run_command", "list_files", "git_log"]


def call(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, tool: str, **arguments: object
) -> str:
    """What the model was told the call returned (note_taker answers `Done: <result>.`)."""
    answer = finals(chat(stub, agent_id, f"call {tool} {json.dumps(arguments)}"))
    assert len(answer) == 1, answer
    return answer[0].removeprefix("Done: ").removesuffix(".")


def result(
    stub: agent_pb2_grpc.AgentServiceStub, agent_id: str, tool: str, **arguments: object
) -> dict[str, object]:
    told = call(stub, agent_id, tool, **arguments)
    parsed: dict[str, object] = json.loads(told)
    return parsed


def new_agent(stub: agent_pb2_grpc.AgentServiceStub) -> str:
    return create_agent(stub, tools=[agent_pb2.Tool(name=name) for name in TOOLS])


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={repo}", *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.chaos
def test_files_survive_a_kill_and_the_sandbox_holds(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = note_taker
    data = tmp_path / "data"
    engine = Engine(data, llm.url, ENGRAM_TOOLS="engram.tools.workspace").start()
    try:
        stub = engine.stub()
        agent = new_agent(stub)
        written = result(
            stub, agent, "write_file", path="notes/hello.txt", content="hello, colleague\n"
        )
        assert written["path"] == "notes/hello.txt"
        home = data / "workspaces" / "_default" / agent
        assert git(home / "repo.git", "rev-parse", "HEAD").strip() == written["commit"]

        engine.kill()
        engine.start()
        stub = engine.stub()
        ran = result(stub, agent, "run_command", command="cat notes/hello.txt")
        assert ran["exit_code"] == 0 and ran["output"] == "hello, colleague\n"
        # The command's call is a commit too, after the write's.
        assert git(home / "repo.git", "rev-parse", "HEAD~1").strip() == written["commit"]

        patch = subprocess.run(
            [sys.executable, "-m", "engram.cli", "workspace", "export", agent, "--patch"],
            capture_output=True,
            text=True,
            check=True,
            env={"ENGRAM_WORKSPACE_DIR": str(data / "workspaces"), "PATH": "/usr/bin:/bin"},
        ).stdout
        assert "+++ b/notes/hello.txt" in patch and "+hello, colleague" in patch

        # Another agent, and what its tools cannot reach.
        other = new_agent(stub)
        result(stub, other, "write_file", path="secret.txt", content="TOPSECRET-42\n")
        secret = data / "workspaces" / "_default" / other / "tree" / "secret.txt"
        assert secret.read_text() == "TOPSECRET-42\n"

        escape = (
            f"cat {secret}; cat ../{other}/tree/secret.txt; echo out > /usr/escaped; "
            f"echo out > {data}/escaped; echo out > /tmp/kept"
        )
        ran = result(stub, agent, "run_command", command=escape)
        output = str(ran["output"])
        assert "TOPSECRET-42" not in output, output
        # Neither the other agent's files nor the data directory exist in the sandbox.
        assert output.count("No such file or directory") == 2, output
        assert "escaped: Directory nonexistent" in output, output
        assert "Read-only file system" in output, output  # /usr
        assert not (data / "escaped").exists() and not Path("/usr/escaped").exists()

        sock = "import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)"
        ran = result(stub, agent, "run_command", command=f'python3 -c "{sock}"')
        assert ran["exit_code"] != 0 and "unreachable" in str(ran["output"]).lower()

        assert "outside the workspace" in call(
            stub, agent, "write_file", path="../../escaped.txt", content="x"
        )
        assert "only paths inside the workspace" in call(stub, agent, "read_file", path=str(secret))
        assert "outside the workspace" in call(
            stub, agent, "read_file", path=f"../{other}/tree/secret.txt"
        )
        ran = result(
            stub, agent, "run_command", command=f"ln -s {secret} link; ln -s /etc/hostname host"
        )
        assert ran["exit_code"] == 0
        assert "outside the workspace" in call(stub, agent, "read_file", path="link")
        assert "outside the workspace" in call(stub, agent, "read_file", path="host")
        # What the command wrote to its private /tmp is gone; the workspace kept only its files.
        listed = result(stub, agent, "list_files")
        assert listed["files"] == ["host", "link", "notes/hello.txt"]
    finally:
        engine.stop()


@pytest.mark.chaos
def test_a_write_retried_after_a_crash_is_committed_once(tmp_path: Path, llm: FakeLLM) -> None:
    llm.reply = note_taker
    data = tmp_path / "data"
    marker = tmp_path / "crashed"
    engine = Engine(
        data, llm.url, ENGRAM_TOOLS="tests.workspace_tools", ENGRAM_TEST_CRASH=str(marker)
    ).start()
    try:
        stub = engine.stub()
        agent = create_agent(stub, tools=[agent_pb2.Tool(name="write_file")])
        content = 'call write_file {"path": "plan.md", "content": "step one\\n"}'
        try:
            list(stub.Chat(iter([user_message(agent, content, "plan-1")]), timeout=30))
        except grpc.RpcError:
            pass  # the engine died under the call
        assert engine.process is not None
        engine.process.wait(30)
        assert marker.exists()
        engine.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = finals(
                    list(
                        engine.stub().Chat(
                            iter([user_message(agent, content, "plan-1")]), timeout=60
                        )
                    )
                )
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        told = json.loads(answer[0].removeprefix("Done: ").removesuffix("."))
        repo = data / "workspaces" / "_default" / agent / "repo.git"
        key = marker.read_text()
        commits = git(repo, "log", "--format=%H", "-F", f"--grep=Engram-Call: {key}").split()
        assert commits == [told["commit"]]
        assert git(repo, "log", "--format=%s").splitlines() == [
            "write_file plan.md",
            "Workspace created",
        ]
        assert git(repo, "show", "HEAD:plan.md") == "step one\n"
    finally:
        engine.stop()


@pytest.mark.e2e
def test_edits_must_match_once_and_the_size_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tools called directly (they start git and bwrap, so not a unit test)."""
    monkeypatch.setenv("ENGRAM_WORKSPACE_DIR", str(tmp_path))
    monkeypatch.setenv("ENGRAM_WORKSPACE_MAX_BYTES", "1000")

    def ctx(call: str) -> ToolContext:
        return ToolContext(call_id=call, agent_id="agent-1")

    workspace.write_file(ctx("w1"), "a.txt", "x = 1\nx = 1\n")
    with pytest.raises(ToolError, match="found 2 times"):
        workspace.edit_file(ctx("e1"), "a.txt", "x = 1", "x = 2")
    edited = workspace.edit_file(ctx("e2"), "a.txt", "x = 1\nx = 1", "x = 2")
    assert workspace.read_file(ctx("r1"), "a.txt")["content"] == "x = 2\n"
    with pytest.raises(ToolError, match="workspace full"):
        workspace.run_command(ctx("c1"), "head -c 5000 /dev/zero > big")
    with pytest.raises(ToolError, match="workspace full"):
        workspace.write_file(ctx("w2"), "big.txt", "y" * 2000)
    # The refused changes left nothing behind, and no commit.
    assert workspace.list_files(ctx("l1"))["files"] == ["a.txt"]
    assert workspace.git_log(ctx("g1"))["commits"][0]["commit"] == edited["commit"]

"""`engram chat` driven in a real terminal (tmux), and `engram agents`, against a real engine."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.effect_tools import effects
from tests.engine import Engine
from tests.fake_llm import FakeLLM, Messages, Reply, default_reply, note_taker

ENGRAM = str(Path(sys.executable).with_name("engram"))
SLOW = "".join(f"w{i} " for i in range(200))


class Terminal:
    """A program in a tmux session of its own: keys in, the screen out."""

    def __init__(self, command: list[str], width: int = 180, height: int = 60) -> None:
        self.socket = f"engram-test-{uuid.uuid4().hex[:8]}"
        env = {"LANG": "C.UTF-8", "PATH": os.environ.get("PATH", ""), "TERM": "screen"}
        line = shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), *command])
        self._tmux("new-session", "-d", "-s", "main", "-x", str(width), "-y", str(height), line)

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-u", "-f", "/dev/null", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
        )

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "main", "-l", text)
        self._tmux("send-keys", "-t", "main", "Enter")

    def key(self, key: str) -> None:
        self._tmux("send-keys", "-t", "main", key)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", "main", "-S", "-2000").stdout

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 20) -> str:
        """The screen once `pattern` (a regex) shows `count` times."""
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, screen := self.screen())) < count:
            assert time.monotonic() < deadline, f"{pattern!r} not shown:\n{screen}"
            time.sleep(0.05)
        return screen

    def running(self) -> bool:
        return self._tmux("has-session", "-t", "main").returncode == 0

    def close(self) -> None:
        self._tmux("kill-server")


@pytest.fixture
def chat_llm(llm: FakeLLM) -> FakeLLM:
    def reply(messages: Messages) -> Reply:
        last = messages[-1]
        if last["role"] == "tool" or last["content"].startswith("call "):
            return note_taker(messages)
        if "slowly" in last["content"]:
            return SLOW
        return default_reply(messages)

    llm.reply = reply
    return llm


@pytest.fixture
def terminal(engine: Engine) -> Iterator[Terminal]:
    term = Terminal(
        [
            ENGRAM,
            "chat",
            "--address",
            engine.address,
            "--model",
            "fake-model",
            "--goal",
            "Ship it.",
            "--tool",
            "deploy",
        ]
    )
    yield term
    term.close()


def test_chat_in_a_terminal(
    terminal: Terminal, chat_llm: FakeLLM, engine: Engine, effects_log: Path
) -> None:
    screen = terminal.wait_for(r"(?m)^you >")
    found = re.search(r"agent ([0-9a-f-]{36})", screen)
    assert found, screen
    agent_id = found[1]

    terminal.type("hello terminal")
    terminal.wait_for(r"agent > You said: hello terminal\n")

    # A call that needs approval is asked about in place and answered with y.
    terminal.type('call deploy {"service": "api"}')
    terminal.wait_for(r"approve\? \[y\]es")
    assert "deploy wants to run with" in terminal.screen()
    terminal.type("y")
    terminal.wait_for(r"Done: deployed api: done\.")
    assert effects(agent_id, effects_log) == ["deployed api"]

    terminal.type("/history")
    screen = terminal.wait_for(r"completed", count=2)
    assert "hello terminal" in screen and "You said: hello terminal" in screen

    # Ctrl-C during a slow reply cancels it, and the chat goes on.
    chat_llm.token_delay = 0.1
    terminal.type("answer slowly")
    terminal.wait_for(r"w3 ")
    chat_llm.token_delay = 0.0
    terminal.key("C-c")
    terminal.wait_for(r"✗ cancelled")
    assert terminal.running()
    terminal.type("still here?")
    screen = terminal.wait_for(r"You said: still here\?")
    assert "w150" not in screen

    terminal.type("/quit")
    deadline = time.monotonic() + 10
    while terminal.running():
        assert time.monotonic() < deadline, terminal.screen()
        time.sleep(0.05)

    # The same agent, seen by `engram agents` and its friends.
    env = {**os.environ, "COLUMNS": "200"}

    def run(*args: str) -> str:
        done = subprocess.run(
            [ENGRAM, *args, "--address", engine.address],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    listed = run("agents", "ls")
    row = next(line for line in listed.splitlines() if agent_id in line)
    assert re.search(r"\bidle\b.*fake-model.*Ship it\..*\b3\b.*ago", row), listed
    assert all(h in listed for h in ("id", "status", "model", "goal", "turns", "last active"))
    shown = run("agents", "show", agent_id)
    assert "deploy" in shown and "Ship it." in shown
    history = run("history", agent_id)
    assert "cancelled" in history and "still here?" in history
    replayed = run("replay", agent_id, "--from", "0")
    assert "tool_call" in replayed and "final_answer" in replayed
    assert "You said: hello terminal" in replayed
    assert "deleted" in run("agents", "rm", agent_id)
    assert agent_id not in run("agents", "ls")

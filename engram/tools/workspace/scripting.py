"""`run_script` (code mode): a model's Python script run in the workspace's sandbox, whose tool
calls are each a durable step of their own.

The script runs from its start on every run of its activity, answered from the journal the
workflow passes in (engram.tools.scripts) until it makes a call the journal has no answer for:
then it is killed and the call goes back to the workflow, which makes it under its approval
policy and runs the script again. What a script did before a crash is in the journal and is
only read again, never done again.

Re-running is only faithful if the script sees what it saw the first time, so the workspace it
sees (read-only: it changes it through tools) moves with the journal: the commit it started on
first, then, as each answered call returns, the commit that call's result names. A script that
still takes another path (the clock, randomness) is stopped at the first call that differs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from engram.tools.registry import ToolError
from engram.tools.scripts import MAX_SCRIPT_CALLS, NeedsCall, ScriptCall, ScriptJournal
from engram.tools.workspace import sandbox
from engram.tools.workspace.store import Workspace

RUNNER = (Path(__file__).parent / "script_runner.py").read_text()
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def run(ws: Workspace, source: str, journal: ScriptJournal, seconds: float) -> dict[str, Any]:
    """Run `source` against `journal` in the locked workspace `ws`; its result, or NeedsCall."""
    base = journal.state if _COMMIT.match(journal.state) else ws.head()
    try:
        _show(ws, base)
        return _run(ws, source, journal, base, seconds)
    finally:
        ws.restore()


def _show(ws: Workspace, commit: str) -> None:
    """Put the tree (and the index) at `commit`; the next `open()` puts it back at HEAD."""
    ws.git("read-tree", "-u", "--reset", commit)


def _commit_of(output: str) -> str | None:
    try:
        parsed = json.loads(output)
    except ValueError:
        return None
    commit = parsed.get("commit") if isinstance(parsed, dict) else None
    return commit if isinstance(commit, str) and _COMMIT.match(commit) else None


def _run(
    ws: Workspace, source: str, journal: ScriptJournal, base: str, seconds: float
) -> dict[str, Any]:
    started = time.monotonic()
    process = subprocess.Popen(
        sandbox.sandbox_argv(
            ws.tree, ["python3", "-B", "-c", RUNNER], sandbox.OUTPUT_CHARS, read_only=True
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
        start_new_session=True,
    )
    assert process.stdin is not None and process.stdout is not None
    output = bytearray()
    total = 0

    def read_output() -> None:
        nonlocal total
        assert process.stderr is not None
        while chunk := process.stderr.read(65536):
            total += len(chunk)
            if len(output) < sandbox.OUTPUT_CHARS * 4:
                output.extend(chunk[: sandbox.OUTPUT_CHARS * 4 - len(output)])

    def kill() -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    timer = threading.Timer(seconds, kill)
    timer.start()
    made = 0
    try:
        _send(process, {"script": source})
        for line in process.stdout:
            try:
                asked = json.loads(line)
                name, arguments = str(asked["name"]), dict(asked["arguments"])
            except (ValueError, KeyError, TypeError):
                kill()
                raise ToolError("the script broke the tools protocol") from None
            if made >= MAX_SCRIPT_CALLS:
                message = f"a script may make at most {MAX_SCRIPT_CALLS} tool calls"
                _send(process, {"output": message, "is_error": True})
                continue
            if made == len(journal.steps):
                kill()
                raise NeedsCall(ScriptCall(name=name, arguments=json.dumps(arguments), state=base))
            step = journal.steps[made]
            if step.name != name or json.loads(step.arguments or "{}") != arguments:
                kill()
                raise ToolError(
                    f"the script is not deterministic: its call {made + 1} was {step.name}"
                    f"({step.arguments}) on its first run and is {name}({json.dumps(arguments)}) "
                    "now (do not branch on the clock or randomness); the calls before it were "
                    "made once and stand"
                )
            made += 1
            commit = None if step.is_error else _commit_of(step.output)
            if commit is not None:
                _show(ws, commit)
            _send(process, {"output": step.output, "is_error": step.is_error})
        process.wait()
    except BrokenPipeError:
        process.wait()
    finally:
        timer.cancel()
        kill()
        process.wait()
        reader.join(5)
    timed_out = time.monotonic() - started >= seconds and process.returncode == -signal.SIGKILL
    text = output.decode(errors="replace")
    if len(text) > sandbox.OUTPUT_CHARS or total > len(output):
        text = text[: sandbox.OUTPUT_CHARS] + f"\n[output cut: {total:,} bytes in all]"
    result: dict[str, Any] = {
        "exit_code": None if timed_out else process.returncode,
        "output": text,
        "calls": made,
        "seconds": round(time.monotonic() - started, 3),
    }
    if timed_out:
        result["note"] = f"killed after {seconds:g} s"
    return result


def _send(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()

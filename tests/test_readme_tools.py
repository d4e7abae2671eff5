"""The README's tools examples, run as written: the worker tool module loaded with `--tools` from
the directory it is in, and both client programs in fresh processes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tests.engine import Engine, free_port
from tests.fake_llm import FakeLLM, ToolUse
from tests.test_example import run_client

README = Path(__file__).resolve().parent.parent / "README.md"


def examples(heading: str, until: str) -> list[str]:
    text = README.read_text()
    section = text[text.index(heading) : text.index(until)]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def model(messages: list[dict[str, Any]]) -> str | ToolUse:
    """Calls the tool each example is about, then reports what it returned."""
    last = messages[-1]
    if last["role"] == "tool" and "Work on your goal" in messages[-3]["content"]:
        return ToolUse([("finish", json.dumps({"answer": f"Done: {last['content']}."}))])
    if last["role"] == "tool":
        return f"Done: {last['content']}."
    if "Work on your goal" in last["content"]:
        return ToolUse([("restart_service", '{"name": "billing"}')])
    if "Restart it" in last["content"]:
        return ToolUse([("restart_service", '{"name": "billing"}')])
    if "cafe" in last["content"]:
        return ToolUse([("get_location", "{}")])
    return "Sure."


def test_tools_examples_as_written(tmp_path: Path, llm: FakeLLM) -> None:
    module, approving, client_tool = examples("## Tools and approvals", "## Autonomous agents")
    autonomous = examples("## Autonomous agents", "## Agents as tools")[0]
    (tmp_path / "ops_tools.py").write_text(module)
    llm.reply = model
    engine = Engine(
        tmp_path / "data",
        llm.url,
        port=free_port(),
        cwd=tmp_path,
        extra_args=("--tools", "ops_tools"),
    ).start()
    try:
        out = run_client(sys.executable, approving, engine)
        assert out.splitlines() == [
            'Agent wants restart_service {"name": "billing"}',
            "Agent: Done: billing restarted.",
        ]
        out = run_client(sys.executable, client_tool, engine)
        assert out.splitlines() == ["Agent: Done: Lisbon, Principe Real."]
        out = run_client(sys.executable, autonomous, engine)
        assert out.splitlines() == [
            'Agent wants restart_service {"name": "billing"}',
            "Agent: Done: billing restarted.",
        ]
    finally:
        engine.stop()

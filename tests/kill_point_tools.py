"""The workspace tools, with points inside them where a call can be held for the test to SIGKILL
its worker (for tests/test_workspace_kills.py).

ENGRAM_TEST_KILL_PLAN names a JSON file `{agent id: point}`, read at every point; ENGRAM_TEST_KILL_
DIR is where a call that reaches its agent's point leaves a marker (the agent's id) before it
sleeps, waiting to be killed. An agent holds once: a retry finds the marker and goes on.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from engram.tools.scripts import NeedsCall
from engram.tools.workspace import (  # noqa: F401 (enabled by being here)
    edit_file,
    git_log,
    read_file,
    run_script,
    scripting,
    write_file,
)
from engram.tools.workspace.store import Workspace


def hold(agent_id: str, point: str) -> None:
    plan_file = os.environ.get("ENGRAM_TEST_KILL_PLAN")
    if not plan_file:
        return
    plan = json.loads(Path(plan_file).read_text() or "{}")
    if plan.get(agent_id) != point:
        return
    marker = Path(os.environ["ENGRAM_TEST_KILL_DIR"]) / agent_id
    if marker.exists():
        return
    marker.write_text(point)
    time.sleep(600)  # until the worker is killed


_restore = Workspace.restore
_commit = Workspace.commit
_git = Workspace.git
_run = scripting.run
_show = scripting._show
_shown = threading.local()


def restore(self: Workspace) -> None:
    _restore(self)
    hold(self.agent_id, "restored")


def commit(self: Workspace, key: str, subject: str, result: dict[str, Any]) -> str:
    hold(self.agent_id, "applied")
    return _commit(self, key, subject, result)


def git(self: Workspace, *args: str, check: bool = True, input: bytes | None = None) -> str:
    out = _git(self, *args, check=check, input=input)
    if args[:1] == ("add",):
        hold(self.agent_id, "staged")
    elif args[:1] == ("commit",):
        hold(self.agent_id, "committed")
    return out


def run(ws: Workspace, source: str, journal: Any, seconds: float) -> dict[str, Any]:
    hold(ws.agent_id, "script-started")
    _shown.count = 0
    try:
        return _run(ws, source, journal, seconds)
    except NeedsCall:
        hold(ws.agent_id, "script-stopped")
        raise


def show(ws: Workspace, commit: str) -> None:
    _show(ws, commit)
    _shown.count = getattr(_shown, "count", 0) + 1
    if _shown.count > 1:  # the first puts the tree at the script's start
        hold(ws.agent_id, "script-replayed")


Workspace.restore = restore  # type: ignore[method-assign]
Workspace.commit = commit  # type: ignore[method-assign]
Workspace.git = git  # type: ignore[method-assign]
scripting.run = run
scripting._show = show

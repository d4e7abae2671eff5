"""The workspace tools, with a `write_file` that dies once (for tests/test_workspace.py).

ENGRAM_TEST_CRASH names a marker file: while it does not exist, the first `write_file` SIGKILLs
the whole engine (worker, gateway and Temporal, one process group) right after its commit, before
its result reaches Temporal, and creates the marker so the retry on the restarted engine lives.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import engram.tools.workspace as workspace
from engram.tools import ToolContext, tool
from engram.tools.workspace import (  # noqa: F401 (enabled by being here)
    edit_file,
    git_commit,
    git_diff,
    git_log,
    list_files,
    read_file,
    run_command,
    search_files,
)


@tool(name="write_file", timeout=timedelta(seconds=60))
def crashing_write_file(ctx: ToolContext, path: str, content: str) -> dict[str, Any]:
    """Create or replace a file in your workspace with `content`; the change is committed.

    Args:
        path: the file, relative to the workspace's top
        content: the file's whole new text
    """
    result = workspace.write_file(ctx, path, content)
    marker = Path(os.environ["ENGRAM_TEST_CRASH"])
    if not marker.exists():
        marker.write_text(ctx.idempotency_key)
        os.killpg(os.getpgrp(), signal.SIGKILL)
    return result

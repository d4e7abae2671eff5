"""`engram workspace export|import`: the arguments only; engram.tools.workspace.commands runs them
(imported when they run, so other commands do not load the workspace tools)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_commands(commands: Any) -> None:
    workspace = commands.add_parser("workspace", help="export or import an agent's workspace")
    actions = workspace.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export", help="the agent's changes (since its last import)")
    export.add_argument("agent_id", metavar="ID")
    export.add_argument(
        "--patch", action="store_true", help="print them as a git patch (else a summary)"
    )
    imported = actions.add_parser("import", help="copy a directory into the agent's workspace")
    imported.add_argument("agent_id", metavar="ID")
    imported.add_argument("path", type=Path, metavar="PATH")
    imported.add_argument(
        "--tenant", default="", help="the agent's tenant, for a workspace not created yet"
    )
    for parser in (export, imported):
        parser.add_argument(
            "--workspace-dir",
            type=Path,
            default=None,
            help="workspaces root (default $ENGRAM_WORKSPACE_DIR, else "
            "$ENGRAM_DATA_DIR/workspaces, "
            "else .engram/workspaces)",
        )
    workspace.set_defaults(terminal=_run)


def _run(args: argparse.Namespace) -> int:
    from engram.tools.workspace.commands import run

    return run(args)

"""`engram workspace export ID [--patch]` and `engram workspace import ID PATH`: an operator's view
of an agent's workspace, read from its bare repository directly (no engine needs to run). Their
arguments are defined in engram.terminal.workspace."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from engram.tools.registry import ToolError
from engram.tools.workspace.store import (
    BASE_TAG,
    Workspace,
    workspaces_root,
)


def run(args: argparse.Namespace) -> int:
    root = args.workspace_dir or workspaces_root()
    try:
        if args.action == "export":
            return _export(root, args.agent_id, args.patch)
        return _import(root, args.agent_id, args.path, args.tenant)
    except ToolError as err:
        print(f"engram workspace: {err}", file=sys.stderr)
        return 1


def _export(root: Path, agent_id: str, patch: bool) -> int:
    found = Workspace.find(root, agent_id)
    if found is None:
        print(f"engram workspace: agent {agent_id} has no workspace in {root}", file=sys.stderr)
        return 1
    # Read from the record, not the tree: a call may be working in it right now.
    if patch:
        sys.stdout.write(found.git("diff", "--binary", BASE_TAG, "HEAD"))
    else:
        sys.stdout.write(found.git("log", "--stat", "--format=%h %cI %s", f"{BASE_TAG}..HEAD"))
    return 0


def _import(root: Path, agent_id: str, source: Path, tenant: str) -> int:
    if not source.is_dir():
        print(f"engram workspace: {source} is not a directory", file=sys.stderr)
        return 1
    workspace = Workspace.find(root, agent_id) or Workspace(root, tenant, agent_id)
    with workspace.open() as ws:
        for folder, dirs, files in os.walk(source):
            dirs[:] = [d for d in dirs if d != ".git"]
            into = ws.tree / os.path.relpath(folder, source)
            into.mkdir(parents=True, exist_ok=True)
            for name in files:
                shutil.copy2(os.path.join(folder, name), into / name, follow_symlinks=False)
        commit = ws.commit(f"import:{source.resolve()}:{ws.head()}", f"Import {source}", {})
        ws.git("tag", "-f", BASE_TAG)
    print(f"imported {source} into {ws.tree} at commit {commit}")
    return 0

"""The colleague's workspace: a git-backed directory per agent, and tools to work in it
(`--tools engram.tools.workspace`).

Read-only, run without asking under `auto_approve_read_only`: `list_files`, `read_file`,
`search_files`, `git_diff`, `git_log`. Changing it: `write_file`, `edit_file`, `run_command`
(in a bubblewrap sandbox), `git_commit`. Each of those ends with a commit whose id is in its result,
and is done once per call whatever crashes in between (engram.tools.workspace.store says how).
`run_script` (code mode) runs a Python script in the sandbox whose every tool call is a step of
its own (engram.tools.workspace.scripting).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from datetime import timedelta
from typing import Any

from temporalio import activity

from engram.tools.registry import ToolContext, ToolError, tool
from engram.tools.scripts import ScriptJournal
from engram.tools.workspace import sandbox, scripting
from engram.tools.workspace.store import BASE_TAG, Workspace, max_bytes, workspaces_root

log = logging.getLogger("engram.workspace")

MAX_LIST = 1000
MAX_READ_CHARS = 32_000
MAX_MATCHES = 200
DIFF_CHARS = 32_000
COMMAND_TIMEOUT = 300

if sandbox.bwrap() is None:
    log.warning(
        "workspace: bubblewrap (bwrap) is not installed: run_command will refuse every command "
        "(install the bubblewrap package to enable it)"
    )
else:
    log.info(
        "workspace: run_command runs in bubblewrap (network %s)",
        "allowed" if sandbox.network_allowed() else "off",
    )


def workspace_of(ctx: ToolContext) -> Workspace:
    """The calling agent's workspace, under its tenant (the fairness key its workflow's tasks
    carry, engram.agent_start); only `ctx`'s agent ever reaches it."""
    tenant = ""
    try:
        tenant = activity.info().priority.fairness_key or ""
    except RuntimeError:  # called outside an activity (a test)
        pass
    return Workspace(workspaces_root(), tenant, ctx.agent_id)


def _change(ctx: ToolContext, subject: str, apply: Any) -> dict[str, Any]:
    """Run `apply(workspace) -> result` once for this call, and commit what it did."""
    with workspace_of(ctx).open() as ws:
        done = ws.recorded(ctx.idempotency_key)
        if done is not None:
            return {**done.result, "commit": done.commit}
        result: dict[str, Any] = apply(ws)
        commit = ws.commit(ctx.idempotency_key, subject, result)
        return {**result, "commit": commit}


@tool(timeout=timedelta(seconds=30), read_only=True)
def list_files(ctx: ToolContext, path: str = ".", recursive: bool = True) -> dict[str, Any]:
    """List the files in your workspace (a git repository only you can reach).

    Args:
        path: a directory in the workspace, relative to its top
        recursive: list subdirectories' files too
    """
    with workspace_of(ctx).open() as ws:
        top = ws.resolve(path, must_exist=True)
        if not top.is_dir():
            raise ToolError(f"not a directory: {path}")
        entries: list[str] = []
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files) + ([] if recursive else [d + "/" for d in dirs]):
                entries.append(os.path.relpath(os.path.join(folder, name), ws.tree.resolve()))
            if not recursive:
                break
        result: dict[str, Any] = {"files": entries[:MAX_LIST], "commit": ws.head()}
        if len(entries) > MAX_LIST:
            result["note"] = f"{len(entries)} entries, the first {MAX_LIST} shown"
        return result


@tool(timeout=timedelta(seconds=30), read_only=True)
def read_file(
    ctx: ToolContext, path: str, start_line: int = 1, end_line: int | None = None
) -> dict[str, Any]:
    """Read a text file of your workspace, or some of its lines.

    Args:
        path: the file, relative to the workspace's top
        start_line: first line to return (1-based)
        end_line: last line to return (inclusive); omit for the end of the file
    """
    with workspace_of(ctx).open() as ws:
        target = ws.resolve(path, must_exist=True)
        if not target.is_file():
            raise ToolError(f"not a file: {path}")
        lines = target.read_text(errors="replace").splitlines(keepends=True)
        first = max(1, start_line)
        last = len(lines) if end_line is None else min(end_line, len(lines))
        text = "".join(lines[first - 1 : last])
        result: dict[str, Any] = {
            "path": ws.relative(target),
            "start_line": first,
            "end_line": last,
            "total_lines": len(lines),
            "content": text[:MAX_READ_CHARS],
        }
        if len(text) > MAX_READ_CHARS:
            result["note"] = f"cut at {MAX_READ_CHARS} characters: read fewer lines at a time"
        return result


@tool(timeout=timedelta(seconds=60), read_only=True)
def search_files(
    ctx: ToolContext, pattern: str, path: str = ".", max_results: int = 100
) -> dict[str, Any]:
    """Search your workspace's files for a regular expression; each match with file and line.

    Args:
        pattern: a regular expression (Rust/Python syntax), e.g. def \\w+_total
        path: a file or directory to search, relative to the workspace's top
        max_results: most matching lines to return
    """
    limit = max(1, min(max_results, MAX_MATCHES))
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ToolError(f"invalid regular expression {pattern!r}: {err}") from None
    with workspace_of(ctx).open() as ws:
        top = ws.resolve(path, must_exist=True)
        if shutil.which("rg"):
            matches = _search_rg(ws, pattern, top, limit + 1)
        else:
            matches = _search_python(ws, regex, top, limit + 1)
        result: dict[str, Any] = {"matches": matches[:limit]}
        if len(matches) > limit:
            result["note"] = f"more than {limit} matches: narrow the pattern or the path"
        return result


def _search_rg(ws: Workspace, pattern: str, top: Any, limit: int) -> list[dict[str, Any]]:
    done = subprocess.run(
        [
            "rg",
            "--no-heading",
            "--line-number",
            "--color=never",
            "--no-config",
            "--hidden",
            "--max-columns=300",
            "-e",
            pattern,
            "--",
            str(top),
        ],
        capture_output=True,
        cwd=ws.tree,
        timeout=50,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise ToolError(f"search failed: {done.stderr.decode(errors='replace').strip()}")
    matches = []
    for line in done.stdout.decode(errors="replace").splitlines():
        file, _, rest = line.partition(":")
        number, _, text = rest.partition(":")
        if not number.isdigit():
            continue
        name = os.path.relpath(file, ws.tree.resolve())
        matches.append({"path": name, "line": int(number), "text": text[:300]})
        if len(matches) >= limit:
            break
    return matches


def _search_python(
    ws: Workspace, regex: re.Pattern[str], top: Any, limit: int
) -> list[dict[str, Any]]:
    files = [top] if top.is_file() else []
    if top.is_dir():
        for folder, dirs, names in os.walk(top):
            dirs.sort()
            files += [os.path.join(folder, n) for n in sorted(names)]
    matches = []
    for file in files:
        if os.path.islink(file):
            continue
        try:
            with open(file, errors="replace") as handle:
                for number, text in enumerate(handle, 1):
                    if regex.search(text):
                        name = os.path.relpath(file, ws.tree.resolve())
                        matches.append(
                            {"path": name, "line": number, "text": text.rstrip("\n")[:300]}
                        )
                        if len(matches) >= limit:
                            return matches
        except OSError:
            continue
    return matches


@tool(timeout=timedelta(seconds=60))
def write_file(ctx: ToolContext, path: str, content: str) -> dict[str, Any]:
    """Create or replace a file in your workspace with `content`; the change is committed.

    Args:
        path: the file, relative to the workspace's top (directories are created)
        content: the file's whole new text
    """

    def apply(ws: Workspace) -> dict[str, Any]:
        target = ws.resolve(path)
        if target.is_dir():
            raise ToolError(f"{path} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        return {"path": ws.relative(target), "bytes": len(content.encode())}

    return _change(ctx, f"write_file {path}", apply)


@tool(timeout=timedelta(seconds=60))
def edit_file(ctx: ToolContext, path: str, old_text: str, new_text: str) -> dict[str, Any]:
    """Replace one exact piece of text in a file of your workspace; the change is committed.

    `old_text` must occur exactly once in the file (include surrounding lines to make it unique).

    Args:
        path: the file, relative to the workspace's top
        old_text: the exact text to replace, as it is in the file now
        new_text: what replaces it
    """

    def apply(ws: Workspace) -> dict[str, Any]:
        target = ws.resolve(path, must_exist=True)
        if not target.is_file():
            raise ToolError(f"not a file: {path}")
        text = target.read_text()
        count = text.count(old_text) if old_text else 0
        if count != 1:
            found = "not found" if count == 0 else f"found {count} times"
            raise ToolError(
                f"old_text is {found} in {path}: it must match exactly once (copy it from "
                "read_file, with enough surrounding lines to be unique)"
            )
        target.write_text(text.replace(old_text, new_text, 1))
        return {"path": ws.relative(target), "replaced": 1}

    return _change(ctx, f"edit_file {path}", apply)


@tool(timeout=timedelta(seconds=COMMAND_TIMEOUT + 30))
def run_command(ctx: ToolContext, command: str, timeout_seconds: int = 60) -> dict[str, Any]:
    """Run a shell command in your workspace, in a sandbox; what it changes is committed.

    The workspace is the current directory (/workspace) and the only place it can write; there is
    no network unless the operator allowed it, and its output is cut when long.

    Args:
        command: a /bin/sh command line, e.g. python3 -m pytest -q
        timeout_seconds: kill it after this many seconds (at most 300)
    """
    seconds = max(1, min(timeout_seconds, COMMAND_TIMEOUT))

    def apply(ws: Workspace) -> dict[str, Any]:
        finished = sandbox.run_sandboxed(ws.tree, command, seconds, max_bytes())
        result: dict[str, Any] = {
            "exit_code": finished.exit_code,
            "output": finished.output,
            "seconds": finished.seconds,
        }
        if finished.timed_out:
            result["note"] = f"killed after {seconds} s"
        return result

    if sandbox.bwrap() is None:
        sandbox.sandbox_command(workspace_of(ctx).tree, command, 1)  # raises: says why
    return _change(ctx, f"run_command {command}", apply)


@tool(timeout=timedelta(seconds=COMMAND_TIMEOUT + 30))
def run_script(ctx: ToolContext, script: str, timeout_seconds: int = 60) -> dict[str, Any]:
    """Run a Python 3 script in your workspace's sandbox; it calls your tools as `tools.NAME(...)`.

    Use it to do many steps at once: `tools.write_file(path="a.py", content=...)`,
    `tools.run_command(command="python3 -m unittest")`; arguments by name. A call returns the
    tool's result (a dict for the workspace tools); a failed or denied call raises
    `tools.ToolError`. The script sees the workspace read-only at /workspace (the current
    directory) and changes it only through tools; each call is a step of its own, under its
    own approval. The script may run again from the start after a crash or an approval, with
    its earlier calls answered as before, so it must not branch on the time or randomness.
    Its printed output and exit code are the result.

    Args:
        script: the Python source to run
        timeout_seconds: stop each run of it after this many seconds (at most 300)
    """
    seconds = max(1, min(timeout_seconds, COMMAND_TIMEOUT))
    if sandbox.bwrap() is None:
        sandbox.sandbox_command(workspace_of(ctx).tree, "", 1)  # raises: says why
    journal = ctx.journal or ScriptJournal()
    with workspace_of(ctx).open() as ws:
        return scripting.run(ws, script, journal, seconds)


@tool(timeout=timedelta(seconds=30), read_only=True)
def git_diff(ctx: ToolContext, since: str = BASE_TAG, path: str = ".") -> dict[str, Any]:
    """The changes in your workspace since a commit, as a unified diff.

    Args:
        since: a commit id from an earlier result, or engram-base (the workspace's start or its
            last import)
        path: limit the diff to this file or directory
    """
    with workspace_of(ctx).open() as ws:
        target = ws.relative(ws.resolve(path))
        if not re.fullmatch(r"[A-Za-z0-9._~^/-]{1,100}", since) or since.startswith("-"):
            raise ToolError(f"not a commit: {since!r}")
        if not ws.git("rev-parse", "-q", "--verify", f"{since}^{{commit}}", check=False):
            raise ToolError(f"no commit {since!r} in this workspace")
        diff = ws.git("diff", since, "HEAD", "--", target)
        result: dict[str, Any] = {"diff": diff[:DIFF_CHARS], "commit": ws.head()}
        if len(diff) > DIFF_CHARS:
            result["note"] = f"cut at {DIFF_CHARS} characters: ask for one path at a time"
        return result


@tool(timeout=timedelta(seconds=30), read_only=True)
def git_log(ctx: ToolContext, limit: int = 20) -> dict[str, Any]:
    """The latest commits of your workspace, newest first.

    Args:
        limit: most commits to list
    """
    with workspace_of(ctx).open() as ws:
        text = ws.git("log", f"-n{max(1, min(limit, 200))}", "--format=%H%x00%cI%x00%s")
        commits = []
        for line in text.splitlines():
            commit, when, subject = line.split("\x00", 2)
            commits.append({"commit": commit, "time": when, "subject": subject})
        return {"commits": commits}


@tool(timeout=timedelta(seconds=30))
def git_commit(ctx: ToolContext, message: str) -> dict[str, Any]:
    """Mark a milestone in your workspace's history with your own message.

    Every change is already committed by the tool that made it; this adds a named commit to find
    later (git_log) and to diff from (git_diff).

    Args:
        message: what the work up to now achieved, one line
    """
    return _change(
        ctx, message.strip().splitlines()[0] if message.strip() else "milestone", lambda ws: {}
    )

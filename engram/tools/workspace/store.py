"""An agent's workspace on disk: a work tree and the bare git repository that records it.

Layout, under the workspaces root (`ENGRAM_WORKSPACE_DIR`, else `<data dir>/workspaces`)::

    <tenant>/<agent id>/repo.git   the bare repository: every commit, `HEAD` the last recorded one
    <tenant>/<agent id>/tree       the files tools and commands see
    <tenant>/<agent id>/lock       held (flock) by the one call working on the workspace

The bare repository is the record; the tree is only a checkout of it. Every call takes the lock,
then puts the tree back to exactly `HEAD` (reset and clean), so whatever a crashed call left half
done is gone before the next one starts: a retried call runs on the step before it. A call that
changes the tree ends with a commit that names its idempotency key and carries its result, so an
attempt that finds its key already committed returns that result without applying anything again.

Why a bare repository in the data directory, not a bundle in the blob store: git keeps it
incrementally (one commit adds only its new objects; a bundle per call would copy or chain them),
it is updated atomically (a commit's objects are written before the ref moves), the admin commands
and plain `git` read it directly, and workers already share the data directory's volume when more
than one runs. The cost: workers on several hosts must mount the workspaces root from shared
storage.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engram.tools.registry import ToolError

ROOT_ENV = "ENGRAM_WORKSPACE_DIR"
DATA_DIR_ENV = "ENGRAM_DATA_DIR"
MAX_BYTES_ENV = "ENGRAM_WORKSPACE_MAX_BYTES"
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_TENANT = "_default"
# The tag the agent's own changes are measured from: the empty start, or the last import.
BASE_TAG = "engram-base"
# Where commands see the tree (engram.tools.workspace.sandbox).
SANDBOX_PATH = "/workspace"
CALL_TRAILER = "Engram-Call: "
RESULT_TRAILER = "Engram-Result: "
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
# Git reads no configuration but ours: no user hooks, aliases or credential helpers.
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Engram agent",
    "GIT_AUTHOR_EMAIL": "agent@engram.invalid",
    "GIT_COMMITTER_NAME": "Engram agent",
    "GIT_COMMITTER_EMAIL": "agent@engram.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def workspaces_root() -> Path:
    configured = os.environ.get(ROOT_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get(DATA_DIR_ENV) or ".engram") / "workspaces"


def max_bytes() -> int:
    try:
        return int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))
    except ValueError:
        return DEFAULT_MAX_BYTES


def _component(name: str, what: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ToolError(f"{what} {name!r} cannot name a workspace directory")
    return name


@dataclass(frozen=True)
class Recorded:
    """A commit made by a call: its id and the result it returned."""

    commit: str
    result: dict[str, Any]


class Workspace:
    """One agent's workspace. Use `open()` around any work on it."""

    def __init__(self, root: Path, tenant: str, agent_id: str) -> None:
        self.home = (
            root / _component(tenant or DEFAULT_TENANT, "tenant") / _component(agent_id, "agent id")
        )
        self.repo = self.home / "repo.git"
        self.tree = self.home / "tree"
        self.agent_id = agent_id

    @staticmethod
    def find(root: Path, agent_id: str) -> Workspace | None:
        """The workspace of `agent_id` under any tenant (admin commands know only the agent)."""
        _component(agent_id, "agent id")
        for tenant in sorted(p for p in root.glob("*") if p.is_dir()):
            if (tenant / agent_id / "repo.git").is_dir():
                return Workspace(root, tenant.name, agent_id)
        return None

    @contextmanager
    def open(self) -> Iterator[Workspace]:
        """Hold the workspace's lock, with the tree exactly as of the last recorded commit."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._ensure()
                self.restore()
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def git(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", f"--git-dir={self.repo}", f"--work-tree={self.tree}", *args],
            input=input,
            capture_output=True,
            env={**os.environ, **_GIT_ENV},
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"git {args[0]} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode(errors="replace")

    def _ensure(self) -> None:
        self.tree.mkdir(exist_ok=True)
        if (self.repo / "HEAD").exists() and self.git(
            "rev-parse", "-q", "--verify", "HEAD", check=False
        ):
            return
        subprocess.run(
            ["git", "init", "-q", "--bare", "-b", "main", str(self.repo)],
            env={**os.environ, **_GIT_ENV},
            check=True,
        )
        # Committed objects and refs reach the disk before a call's result does.
        self.git("config", "core.fsync", "committed,reference")
        self.git("config", "core.hooksPath", os.devnull)
        self.git("commit", "-q", "--allow-empty", "-m", "Workspace created")
        self.git("tag", "-f", BASE_TAG)

    def restore(self) -> None:
        """Put the tree back to `HEAD`: whatever a call left uncommitted (a crash) is dropped."""
        self.git("reset", "-q", "--hard", "HEAD")
        self.git("clean", "-q", "-f", "-d", "-x")

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def recorded(self, key: str) -> Recorded | None:
        """The commit a call with idempotency `key` made, if it made one."""
        line = CALL_TRAILER + key
        found = self.git("log", "--format=%H%x00%B%x01", "-F", f"--grep={line}")
        for entry in found.split("\x01"):
            commit, _, message = entry.strip().partition("\x00")
            lines = message.splitlines()
            if line in lines:
                result = next((x for x in lines if x.startswith(RESULT_TRAILER)), "")
                return Recorded(commit, json.loads(result.removeprefix(RESULT_TRAILER) or "{}"))
        return None

    def commit(self, key: str, subject: str, result: dict[str, Any]) -> str:
        """Commit the whole tree (empty if nothing changed), past the size check; the commit id."""
        self.check_size()
        self.git("add", "-A")
        message = "\n".join(
            [
                subject.splitlines()[0][:200] if subject.strip() else "change",
                "",
                CALL_TRAILER + key,
                RESULT_TRAILER + json.dumps(result),
            ]
        )
        self.git("commit", "-q", "--allow-empty", "--no-verify", "-F", "-", input=message.encode())
        return self.head()

    def check_size(self) -> None:
        """Refuse a tree over the limit: the change is dropped and the model told why."""
        limit = max_bytes()
        used = tree_bytes(self.tree)
        if used > limit:
            self.restore()
            raise ToolError(
                f"workspace full: this change would make it {used:,} bytes, over its limit of "
                f"{limit:,} bytes ({MAX_BYTES_ENV}); the change was discarded. Delete files or "
                "write smaller ones."
            )

    def resolve(self, path: str, *, must_exist: bool = False) -> Path:
        """`path` inside the tree, refusing anything that leaves it (`..`, absolute, symlinks)."""
        relative = Path(path.strip() or ".")
        if relative.is_absolute():
            # Commands see the workspace at /workspace; the model may use those paths too.
            if not relative.is_relative_to(SANDBOX_PATH):
                raise ToolError(f"refused {path!r}: only paths inside the workspace can be used")
            relative = relative.relative_to(SANDBOX_PATH)
        if ".git" in relative.parts:
            raise ToolError(f"refused {path!r}: .git is not part of the workspace")
        tree = self.tree.resolve()
        target = (tree / relative).resolve()
        if target != tree and not target.is_relative_to(tree):
            raise ToolError(f"refused {path!r}: it leads outside the workspace")
        if must_exist and not target.exists():
            raise ToolError(f"no such file in the workspace: {path}")
        return target

    def relative(self, target: Path) -> str:
        return target.relative_to(self.tree.resolve()).as_posix() or "."


def tree_bytes(tree: Path) -> int:
    total = 0
    for folder, dirs, files in os.walk(tree):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total

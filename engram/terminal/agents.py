"""`engram agents ls|show|rm|fork|rewind`, `engram history ID [--grep TEXT]`,
`engram replay ID --from N`."""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engram.client import (
    AgentInfo,
    Engram,
    EngramError,
    Error,
    Event,
    Final,
    Status,
    Text,
    Thought,
    ToolCall,
    ToolResult,
    UserMessage,
)
from engram.terminal import connect
from engram.terminal.render import ago, clip
from engram.v1 import agent_pb2


def run_agents(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    engram = connect(args)
    try:
        if args.action == "ls":
            _ls(console, engram, args.status, args.limit)
        elif args.action == "show":
            _show(console, engram.agent(args.agent_id).info())
        elif args.action == "rm":
            engram.agent(args.agent_id).delete(force=args.force)
            console.print(f"deleted {args.agent_id}")
        elif args.action == "fork":
            forked = engram.agent(args.agent_id).fork(args.at)
            console.print(f"forked {args.agent_id} after message {args.at}: {forked}")
        elif args.action == "rewind":
            branch = engram.agent(args.agent_id).rewind(args.to)
            console.print(f"rewound {args.agent_id} to message {args.to}; the rest is in {branch}")
    except EngramError as err:
        console.print(f"[red]{escape(err.details)}[/] ({err.code.name})")
        return 1
    finally:
        engram.close()
    return 0


def _ls(console: Console, engram: Engram, status: str, limit: int) -> None:
    listed = engram.list_agents(status, limit)
    # The list carries no stats; each agent says its own, a few at a time.
    with ThreadPoolExecutor(max_workers=8) as pool:
        agents = list(pool.map(lambda a: _details(engram, a), listed))
    if not console.is_terminal:
        # Piped into grep or a file: whole rows, not rows cut to 80 columns.
        console.width = 240
    table = Table("id", "status", "model", "goal", "turns", "last active", box=box.SIMPLE)
    for column in table.columns:
        column.no_wrap = column.header != "goal"
    for agent in agents:
        table.add_row(
            agent.agent_id,
            agent.status,
            agent.model,
            clip(agent.goal, 50),
            str(agent.turns),
            ago(agent.updated_at),
        )
    console.print(table)


def _details(engram: Engram, listed: AgentInfo) -> AgentInfo:
    try:
        return engram.agent(listed.agent_id).info()
    except EngramError:
        return listed


def _show(console: Console, info: AgentInfo) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("id", info.agent_id),
        ("status", info.status),
        ("model", info.model),
        ("goal", info.goal),
        ("system prompt", info.system_prompt),
        ("created", f"{info.created_at:%Y-%m-%d %H:%M:%S} UTC" if info.created_at else "-"),
        ("last active", ago(info.updated_at)),
        ("turns", str(info.turns)),
        ("tool calls", str(info.tool_calls)),
        ("tokens used", str(info.tokens_used)),
        ("cost", f"${info.cost_usd:.6f}"),
        ("budget", f"${info.max_cost_usd:.6f}" if info.max_cost_usd else "none"),
        ("queued messages", str(info.queued_messages)),
        ("last sequence id", str(info.last_sequence_id)),
        ("tools", ", ".join(info.tools) or "-"),
    ]
    if info.forked_from:
        rows.append(("forked from", f"{info.forked_from} after message {info.fork_sequence}"))
    rows += [(f"note {n.name}", n.content) for n in info.notes]
    rows += [
        (f"pending {p.call_id}", f"{p.tool_name} {p.input_json} waits for {p.waiting_for}")
        for p in info.pending_calls
    ]
    for name, value in rows:
        table.add_row(name, escape(value))
    console.print(table)


def run_history(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    engram = connect(args)
    try:
        if args.grep:
            return _grep(console, engram.agent(args.agent_id).search(args.grep, page=args.page))
        turns = engram.agent(args.agent_id).history()
    except EngramError as err:
        console.print(f"[red]{escape(err.details)}[/] ({err.code.name})")
        return 1
    finally:
        engram.close()
    table = Table("#", "seq", "you", "agent", "outcome", "started")
    for number, turn in enumerate(turns, 1):
        table.add_row(
            str(number),
            f"{turn.first_sequence_id}-{turn.last_sequence_id}",
            escape(turn.user),
            escape(turn.reply or turn.error),
            turn.outcome or "running",
            f"{turn.started_at:%Y-%m-%d %H:%M:%S}" if turn.started_at else "-",
        )
    console.print(table)
    return 0


def _grep(console: Console, found: agent_pb2.SearchHistoryResponse) -> int:
    """One line per matching message, best first: its id, time, kind and an excerpt."""
    for hit in found.hits:
        kind = f"{hit.kind} {hit.code}".strip()
        when = f"{hit.time.ToDatetime():%Y-%m-%d %H:%M:%S}"
        console.print(
            f"[dim]{hit.sequence_id:>6}[/] {when} {kind:<13} {escape(hit.excerpt)}", soft_wrap=True
        )
    if found.more:
        console.print("[dim]more: --page N for the next matches[/]")
    return 0 if found.hits else 1


def run_replay(args: argparse.Namespace) -> int:
    """One line per message; a run of text tokens is one line, labelled with its first id."""
    console = Console(highlight=False)
    engram = connect(args)
    in_text = False
    try:
        for event in engram.agent(args.agent_id).replay(args.from_sequence):
            if isinstance(event, Text):
                if not in_text:
                    console.print(f"[dim]{event.sequence_id:>6}[/] text          ", end="")
                    in_text = True
                console.print(event.content, end="", markup=False)
                console.file.flush()
                continue
            if in_text:
                console.print()
                in_text = False
            kind = _KINDS[type(event)]
            # Fields left at their defaults (no error, no message) say nothing.
            fields = {k: v for k, v in vars(event).items() if k not in _COMMON and v}
            detail = " ".join(f"{k}={clip(str(v), 200)!r}" for k, v in fields.items())
            console.print(
                f"[dim]{event.sequence_id:>6}[/] {kind:<13} {escape(detail)}", soft_wrap=True
            )
    except EngramError as err:
        console.print(f"[red]{escape(err.details)}[/] ({err.code.name})")
        return 1
    finally:
        if in_text:
            console.print()
        engram.close()
    return 0


_COMMON = {"sequence_id", "message_id", "timestamp"}
# The wire's payload names, as Replay's callers know them.
_KINDS: dict[type[Event], str] = {
    UserMessage: "user_message",
    Text: "text",
    Thought: "thought",
    ToolCall: "tool_call",
    ToolResult: "tool_result",
    Status: "status",
    Final: "final_answer",
    Error: "error",
}

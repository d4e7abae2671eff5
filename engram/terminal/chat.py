"""`engram chat`: talk to an agent in a terminal.

The reply streams token by token; a tool call that waits for approval is answered in place
(y/n/e/r); Ctrl-C cancels the reply in progress and the chat goes on; Ctrl-D or /quit leaves. The
stream is read on a thread of its own so that the main thread is always free to take Ctrl-C and
prompts; a dropped connection is waited out by engram.client, which resumes where it was.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prompt_toolkit import PromptSession
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engram.client import Agent, EngramError, Event, Status, ToolCall
from engram.client.events import ends_turn
from engram.terminal import connect
from engram.terminal.render import TurnPrinter, clip
from engram.vocabulary import Notice, Waiting

HELP = """\
[bold]/pause[/] [reason]   hold new messages     [bold]/resume[/]   answer what waited
[bold]/cancel[/]            stop the reply        [bold]/retry[/]    run the last failed turn again
[bold]/edit[/] goal|system|temperature|max_context_tokens VALUE, or /edit note NAME TEXT
[bold]/notes[/]  the agent's notes    [bold]/history[/]  its turns
[bold]/quit[/]   leave (or Ctrl-D)
Ctrl-C cancels the reply in progress."""
EDITABLE = {
    "goal": "goal",
    "system": "system_prompt",
    "system_prompt": "system_prompt",
    "temperature": "temperature",
    "max_context_tokens": "max_context_tokens",
}
_DONE = object()


class Chat:
    def __init__(self, agent: Agent, console: Console, session: PromptSession[str]) -> None:
        self.agent = agent
        self.console = console
        self.session = session
        self.user = _user()

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            try:
                line = self.session.prompt("you > ").strip()
            except KeyboardInterrupt:
                continue
            except EOFError:
                return
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if not self.command(line):
                        return
                else:
                    self.follow(functools.partial(self.agent.send, line))
            except EngramError as err:
                self.console.print(f"[red]{escape(err.details)}[/] ({err.code.name})")

    def follow(self, events: Callable[[], Iterable[Event]], show_input: bool = False) -> None:
        """Show a turn as it streams, answering approvals; Ctrl-C cancels it."""
        printer = TurnPrinter(self.console, show_input)
        inbox: queue.Queue[object] = queue.Queue()

        def read() -> None:
            try:
                for event in events():
                    inbox.put(event)
            except Exception as err:
                inbox.put(err)
            inbox.put(_DONE)

        threading.Thread(target=read, daemon=True).start()
        last_call: ToolCall | None = None
        cancelled = False
        while True:
            try:
                item = inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            except KeyboardInterrupt:
                if not cancelled:
                    cancelled = True
                    printer.line("[yellow]cancelling…[/]")
                    self._quietly(self.agent.cancel)
                continue
            if item is _DONE:
                printer.end_text()
                return
            if isinstance(item, Exception):
                printer.end_text()
                raise item
            assert isinstance(item, Event)
            printer.show(item)
            if isinstance(item, ToolCall):
                last_call = item
            elif isinstance(item, Status) and last_call is not None:
                if item.status == Notice.AWAITING_APPROVAL:
                    printer.end_text()
                    cancelled = self.ask(last_call) or cancelled
                elif item.status == Notice.AWAITING_RESULT:
                    printer.line(
                        f"[yellow]⏳ {escape(last_call.name)} is a client tool: a program must "
                        f"send its result for call {last_call.call_id} (Ctrl-C cancels)[/]"
                    )

    def ask(self, call: ToolCall) -> bool:
        """Ask whether to run the call; True if the person cancelled the turn instead."""
        self.console.print(
            f"[bold yellow]? {escape(call.name)}[/] wants to run with "
            f"{escape(clip(call.input_json, 500))}"
        )
        while True:
            try:
                answer = self.session.prompt("approve? [y]es [n]o [e]dit [r]espond > ")
                if self._decide(call, answer.strip().lower()):
                    return False
            except KeyboardInterrupt:
                self.console.print("[yellow]cancelling…[/]")
                self._quietly(self.agent.cancel)
                return True
            except EOFError:
                return False
            except EngramError as err:
                self.console.print(f"[red]{escape(err.details)}[/]")

    def _decide(self, call: ToolCall, answer: str) -> bool:
        if answer in ("y", "yes"):
            self.agent.approve(call.call_id, decided_by=self.user)
        elif answer in ("n", "no"):
            reason = self.session.prompt("reason (optional) > ").strip()
            self.agent.deny(call.call_id, reason, decided_by=self.user)
        elif answer in ("e", "edit"):
            edited = self.session.prompt("input > ", default=call.input_json).strip()
            self.agent.approve(call.call_id, edited_input=edited, decided_by=self.user)
        elif answer in ("r", "respond"):
            text = self.session.prompt("answer in the tool's place > ").strip()
            self.agent.respond(call.call_id, text, decided_by=self.user)
        else:
            return False
        return True

    # --- slash commands -------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run a slash command; False when the chat should end."""
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            self.console.print(HELP)
        elif name == "pause":
            self._said(self.agent.pause(rest))
        elif name == "resume":
            self._said(self.agent.resume())
        elif name == "cancel":
            self._said(self.agent.cancel())
        elif name == "retry":
            after = self.agent.info().last_sequence_id
            self.agent.retry()
            self.follow(lambda: self._next_turn(after), show_input=True)
        elif name == "edit":
            self.edit(rest)
        elif name == "notes":
            self.notes()
        elif name == "history":
            self.history()
        else:
            self.console.print(f"[red]unknown command /{escape(name)}[/]: /help lists them")
        return True

    def edit(self, rest: str) -> None:
        field, _, value = rest.partition(" ")
        value = value.strip()
        if field == "note":
            note, _, text = value.partition(" ")
            if not note:
                self.console.print("[red]/edit note NAME TEXT[/] (no text deletes the note)")
                return
            self._said(self.agent.edit(memory={note: text.strip() or None}))
            return
        if field not in EDITABLE or not value:
            self.console.print(f"[red]/edit {'|'.join(EDITABLE)} VALUE[/], or /edit note NAME TEXT")
            return
        key = EDITABLE[field]
        typed: str | float | int = value
        try:
            if key == "temperature":
                typed = float(value)
            elif key == "max_context_tokens":
                typed = int(value)
        except ValueError:
            self.console.print(f"[red]{key} must be a number[/]")
            return
        self._said(self.agent.edit(**{key: typed}))  # type: ignore[arg-type]

    def notes(self) -> None:
        notes = self.agent.info().notes
        if not notes:
            self.console.print("[dim]no notes[/]")
            return
        table = Table("note", "content", show_lines=False)
        for note in notes:
            table.add_row(note.name, note.content)
        self.console.print(table)

    def history(self) -> None:
        turns = self.agent.history()
        if not turns:
            self.console.print("[dim]no turns yet[/]")
            return
        table = Table("#", "you", "agent", "outcome")
        for number, turn in enumerate(turns, 1):
            table.add_row(
                str(number), clip(turn.user, 60), clip(turn.reply or turn.error, 80), turn.outcome
            )
        self.console.print(table)

    # --- helpers --------------------------------------------------------------------------

    def _next_turn(self, after: int, timeout: float = 60.0) -> Iterator[Event]:
        """The events after `after` until a turn ends: a retried turn, once it has started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.agent.replay(after):
                after = event.sequence_id
                yield event
                if ends_turn(event):
                    return
            time.sleep(0.1)

    def _said(self, status: str) -> None:
        self.console.print(f"[dim]· agent is {escape(status)}[/]")

    def _quietly(self, action: Callable[[], object]) -> None:
        try:
            action()
        except EngramError as err:
            self.console.print(f"[red]{escape(err.details)}[/]")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "terminal"


def run_chat(args: argparse.Namespace) -> int:
    console = Console(highlight=False)

    def reconnecting(err: EngramError, delay: float) -> None:
        console.print(f"\n[dim]· connection lost ({err.code.name}); reconnecting…[/]")

    engram = connect(args, on_reconnect=reconnecting)
    try:
        if args.agent_id:
            agent = engram.agent(args.agent_id)
            info = agent.info()
        else:
            agent = engram.create_agent(
                model=args.model, goal=args.goal, system_prompt=args.system, tools=args.tool
            )
            info = agent.info()
    except EngramError as err:
        console.print(f"[red]{escape(err.details)}[/] ({err.code.name})")
        return 1
    console.print(
        f"[bold]agent {info.agent_id}[/] · {escape(info.model)} · {info.status}"
        + (f"\n[dim]goal: {escape(clip(info.goal, 120))}[/]" if info.goal else "")
    )
    console.print("[dim]/help for commands · Ctrl-C cancels a reply · Ctrl-D or /quit leaves[/]")
    chat = Chat(agent, console, PromptSession())
    for call in info.pending_calls:
        # A call left waiting by an earlier session: answer it now (its turn's stream is Replay's).
        if call.waiting_for == Waiting.APPROVAL:
            chat.ask(
                ToolCall(
                    call.call_id,
                    call.tool_name,
                    call.input_json,
                    sequence_id=0,
                    message_id=call.message_id,
                )
            )
        else:
            console.print(
                f"[yellow]· call {call.call_id} ({escape(call.tool_name)}) waits for "
                "its client's result[/]"
            )
    chat.run()
    engram.close()
    return 0

"""How events look in a terminal: tokens as they stream, calls and notices on lines of their own."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from engram.client import (
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
from engram.vocabulary import ErrorCode, Notice

# Shown in place: the notices that only say a call is waiting are the prompt's business.
_QUIET = {Notice.THINKING, Notice.AWAITING_APPROVAL, Notice.AWAITING_RESULT}


def clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ago(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = max(0.0, (datetime.now(UTC) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


class TurnPrinter:
    """Prints one turn's events; knows whether the cursor is in the middle of streamed text."""

    def __init__(self, console: Console, show_input: bool = False) -> None:
        self.console = console
        self.show_input = show_input
        self.streaming = False
        self.streamed = False

    def line(self, markup: str) -> None:
        self.end_text()
        self.console.print(markup, highlight=False)

    def end_text(self) -> None:
        if self.streaming:
            self.console.print()
            self.streaming = False

    def show(self, event: Event) -> None:
        if isinstance(event, Text | Thought):
            if not self.streaming:
                style = "bold green" if isinstance(event, Text) else "dim italic"
                self.console.print("agent > ", style=style, end="")
                self.streaming = True
            self.console.print(
                event.content,
                end="",
                markup=False,
                highlight=False,
                style="dim italic" if isinstance(event, Thought) else None,
            )
            self.console.file.flush()
            self.streamed = self.streamed or isinstance(event, Text)
        elif isinstance(event, UserMessage):
            if self.show_input:
                self.line(f"[bold]you >[/] {escape(event.content)}")
        elif isinstance(event, ToolCall):
            self.line(f"[cyan]⚙ {escape(event.name)}[/] {escape(clip(event.input_json))}")
        elif isinstance(event, ToolResult):
            style = "red" if event.is_error else "cyan"
            self.line(f"  [{style}]→ {escape(clip(event.output))}[/]")
        elif isinstance(event, Status):
            if event.restarting:
                self.line("[yellow]↻ the reply restarts from the beginning[/]")
                self.streamed = False
            elif event.status == Notice.JOINED:
                self.line("[dim]· taken into the turn in progress, which answers it[/]")
            elif event.status == Notice.INTERRUPTED:
                self.line("[yellow]✂ cut off by a new message[/]")
                self.streamed = False
            elif event.status not in _QUIET:
                self.line(f"[dim]· {escape(event.status)}: {escape(event.message)}[/]")
        elif isinstance(event, Final):
            if self.streamed:
                self.end_text()
            else:
                self.line(f"[bold green]agent >[/] {escape(event.content)}")
        elif isinstance(event, Error):
            if event.code == ErrorCode.CANCELLED:
                self.line("[yellow]✗ cancelled[/]")
            else:
                self.line(f"[red]✗ {escape(event.code)}: {escape(event.message)}[/]")

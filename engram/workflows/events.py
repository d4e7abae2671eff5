"""The agent's stream: every message it sends, numbered by one counter over its whole life.

Events are built here and only here, by keyword or through the named helpers, so a new field can
never shift another's value. The recent events live in the workflow state; older ones are moved to
the transcript store (`drop_through`), leaving a watermark behind.
"""

from __future__ import annotations

from engram.vocabulary import TOOL_ERROR, EventKind, Notice
from engram.workflows.types import AgentState, Event, ToolCall


class EventLog:
    def __init__(self, state: AgentState) -> None:
        self.state = state

    def emit(
        self,
        *,
        kind: EventKind,
        now: float,
        text: str = "",
        code: str = "",
        message_id: str = "",
        call_id: str = "",
    ) -> Event:
        """Record the next event of the stream."""
        event = Event(
            seq=self.state.next_seq,
            kind=kind,
            text=text,
            code=code,
            message_id=message_id,
            ts=now,
            call_id=call_id,
        )
        self.state.events.append(event)
        self.state.next_seq += 1
        return event

    def notice(self, status: Notice | str, text: str, *, now: float, message_id: str = "") -> Event:
        return self.emit(
            kind=EventKind.STATUS, text=text, code=status, message_id=message_id, now=now
        )

    def tool_call(self, call: ToolCall, *, message_id: str, now: float) -> Event:
        return self.emit(
            kind=EventKind.TOOL_CALL,
            text=call.arguments,
            code=call.name,
            call_id=call.call_id,
            message_id=message_id,
            now=now,
        )

    def tool_result(
        self, call_id: str, output: str, *, is_error: bool, message_id: str, now: float
    ) -> Event:
        return self.emit(
            kind=EventKind.TOOL_RESULT,
            text=output,
            code=TOOL_ERROR if is_error else "",
            call_id=call_id,
            message_id=message_id,
            now=now,
        )

    def since(self, seq: int) -> list[Event]:
        return [e for e in self.state.events if e.seq > seq]

    def between(self, first: int, last: int) -> list[Event]:
        return [e for e in self.state.events if first <= e.seq <= last]

    def drop_through(self, seq: int) -> None:
        """Forget the events up to `seq`: the transcript store holds them now."""
        self.state.events = [e for e in self.state.events if e.seq > seq]
        self.state.archived_through = max(self.state.archived_through, seq)

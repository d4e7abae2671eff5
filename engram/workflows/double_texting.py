"""Messages that arrive while the agent works ("double texting"), by the agent's policy.

`queue` answers a message after the chat turn in progress, as a turn of its own; a run takes it in
at its next step. `steer` takes it into the turn in progress at the next safe point: after the
tool results in flight, before the next LLM call. `interrupt` does the same, but first cuts off
the LLM call in progress. `reject` refuses it while anything is in progress or waiting.

Taking a message in is one place, between two LLM calls, so the conversation sent to the model
always has every tool call's result before the user's new words, and a message that arrives as
the turn ends is simply answered on its own: every message is answered exactly once, whatever the
timing. All of it runs in workflow code, so the decision is the same on every replay.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from engram.vocabulary import DoubleTexting, ErrorType, EventKind, Notice
from engram.workflows.events import EventLog
from engram.workflows.ledger import RETRY_SUFFIX, TurnLedger
from engram.workflows.types import AgentSpec, AgentState, PendingMessage, ToolRound, Turn


def policy(spec: AgentSpec) -> DoubleTexting:
    return spec.settings.double_texting


def refuse_if_busy(state: AgentState, busy: bool) -> None:
    """(Validator) `reject`: no new message while the agent works or messages wait."""
    if policy(state.spec) == DoubleTexting.REJECT and (busy or state.queue):
        raise ApplicationError(
            "the agent is busy and its double_texting policy is reject: send the message once "
            "it is idle, or cancel what it is doing",
            type=ErrorType.FAILED_PRECONDITION,
        )


def takes_in(state: AgentState) -> bool:
    """Whether the turn in progress takes in messages that arrive while it runs."""
    chosen = policy(state.spec)
    in_run = state.run is not None
    return chosen in (DoubleTexting.STEER, DoubleTexting.INTERRUPT) or (
        in_run and chosen == DoubleTexting.QUEUE
    )


def interrupts(state: AgentState) -> bool:
    return policy(state.spec) == DoubleTexting.INTERRUPT and bool(_joinable(state.queue))


def waiting(state: AgentState) -> bool:
    """A message the turn in progress would take in is queued."""
    return takes_in(state) and bool(_joinable(state.queue))


def take_in(
    ledger: TurnLedger, log: EventLog, host: Turn, rounds: list[ToolRound], now: float
) -> int:
    """Move the messages at the head of the queue into `host`, the turn in progress: each gets
    its user message and a `joined` notice (its own turn, ended), and its text goes to the model
    after `rounds`' results. How many were taken."""
    taken = _joinable(ledger.state.queue)
    if not taken:
        return 0
    if not rounds:
        rounds.append(ToolRound(text="", calls=[], results=[]))
    for message in taken:
        mid = message.message_id
        first = log.emit(kind=EventKind.USER_MESSAGE, text=message.content, message_id=mid, now=now)
        last = log.notice(Notice.JOINED, host.message_id, now=now, message_id=mid)
        ledger.join(host, message, first.seq, last.seq, now)
        rounds[-1].then.append(message.content)
    return len(taken)


def _joinable(queue: list[PendingMessage]) -> list[PendingMessage]:
    """The chat messages at the head of the queue: not a run to start, a retry (which replays a
    turn of its own) or a message with attachments (which need a turn to carry them)."""
    taken: list[PendingMessage] = []
    for message in queue:
        if message.starts_run or RETRY_SUFFIX in message.message_id or message.attachments:
            break
        taken.append(message)
    return taken

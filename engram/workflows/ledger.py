"""The turn ledger: an agent's messages from queued to answered, and the questions asked of them.

"Is this message queued or recorded?", "has its turn ended?", "what is the next retry's id?" are
asked by several handlers; this class answers each by name, over the queue and turns kept in the
agent's state. It is the only writer of those two lists. Plain, deterministic code with no
Temporal in it, so it is tested on its own.
"""

from __future__ import annotations

from engram.vocabulary import TurnOutcome
from engram.workflows.types import AgentState, Attachment, PendingMessage, Turn

RETRY_SUFFIX = "#retry"


class NothingToRetry(Exception):
    """Retry was asked for, but no turn failed or was cancelled."""


class TurnLedger:
    def __init__(self, state: AgentState) -> None:
        # The lists live in the state, which continue-as-new carries; the ledger only reads and
        # changes them there.
        self.state = state
        # Set by delete: no new message is taken and queued ones will never run.
        self.deleting = False
        # Messages dropped from the queue by their sender (withdraw): they will never run.
        self.withdrawn: set[str] = set()

    # --- questions ------------------------------------------------------------------------

    def find(self, message_id: str) -> Turn | None:
        """The turn of a message that has started (running or ended), newest first."""
        for turn in reversed(self.state.turns):
            if turn.message_id == message_id:
                return turn
        return None

    def is_queued(self, message_id: str) -> bool:
        return any(p.message_id == message_id for p in self.state.queue)

    def is_known(self, message_id: str) -> bool:
        """Queued, running or answered: a resend of it must not make a second turn."""
        return self.is_queued(message_id) or self.find(message_id) is not None

    def has_ended(self, message_id: str) -> bool:
        """Its turn has an outcome, or it never will (dropped from the queue by delete or by its
        sender)."""
        turn = self.find(message_id)
        if turn is not None:
            return bool(turn.outcome)
        if message_id in self.withdrawn:
            return True
        return self.deleting and not self.is_queued(message_id)

    def ready(self) -> bool:
        """A queued message may start now."""
        return bool(self.state.queue) and not self.state.paused

    def next_starts_run(self) -> bool:
        """The oldest queued message starts an autonomous run."""
        return bool(self.state.queue) and self.state.queue[0].starts_run

    def run_queued(self) -> bool:
        """A run waits in the queue to start."""
        return any(p.starts_run for p in self.state.queue)

    def last_failed(self) -> Turn | None:
        """The newest failed or cancelled turn: what retry runs again."""
        failed = (TurnOutcome.FAILED, TurnOutcome.CANCELLED)
        return next((t for t in reversed(self.state.turns) if t.outcome in failed), None)

    def completed_turns(self) -> int:
        """Completed turns over the agent's life, archived ones included."""
        live = sum(1 for t in self.state.turns if t.outcome == TurnOutcome.COMPLETED)
        return self.state.archived_completed_turns + live

    # --- changes --------------------------------------------------------------------------

    def enqueue(
        self,
        message_id: str,
        content: str,
        reply_to: str = "",
        attachments: list[Attachment] | None = None,
        *,
        starts_run: bool = False,
    ) -> bool:
        """Queue a new message (or, `starts_run`, a run with `content` its instructions); False
        (and nothing changes) for one already known."""
        if self.is_known(message_id):
            return False
        self.state.queue.append(
            PendingMessage(message_id, content, reply_to, list(attachments or []), starts_run)
        )
        return True

    def enqueue_retry(self) -> str:
        """Queue the last failed turn again as `<id>#retry<n>`; its message id.

        Raises NothingToRetry when there is none.
        """
        failed = self.last_failed()
        if failed is None:
            raise NothingToRetry("no failed turn to retry")
        tries = sum(1 for t in self.state.turns if t.message_id.startswith(failed.message_id))
        message_id = f"{failed.message_id}{RETRY_SUFFIX}{tries}"
        # A retry still queued (asked twice while paused) holds that id: take the next one.
        while self.is_known(message_id):
            tries += 1
            message_id = f"{failed.message_id}{RETRY_SUFFIX}{tries}"
        self.state.queue.append(
            PendingMessage(message_id, failed.user, failed.reply_to, failed.attachments)
        )
        return message_id

    def start_next(self, first_seq: int, now: float) -> Turn:
        """Take the oldest queued message and record its turn as running."""
        pending = self.state.queue.pop(0)
        turn = Turn(
            message_id=pending.message_id,
            user=pending.content,
            reply_to=pending.reply_to,
            first_seq=first_seq,
            started_at=now,
            attachments=pending.attachments,
        )
        self.state.turns.append(turn)
        return turn

    def join(
        self, host: Turn, message: PendingMessage, first_seq: int, last_seq: int, now: float
    ) -> Turn:
        """Take `message`, the oldest queued, into `host`, the turn in progress (double
        texting): its own turn, events `first_seq` to `last_seq`, ends at once as JOINED, and the
        host carries its text. The joined turn."""
        if not self.state.queue or self.state.queue[0] is not message:
            raise ValueError(f"message {message.message_id!r} is not the oldest queued")
        if not self.state.turns or self.state.turns[-1] is not host:
            raise ValueError(f"turn {host.message_id!r} is not the turn in progress")
        self.state.queue.pop(0)
        joined = Turn(
            message_id=message.message_id,
            user=message.content,
            reply_to=message.reply_to,
            first_seq=first_seq,
            last_seq=last_seq,
            outcome=TurnOutcome.JOINED,
            started_at=now,
            ended_at=now,
            joined_to=host.message_id,
        )
        # Before the host, which stays the last turn: the turn in progress is always the last.
        self.state.turns.insert(len(self.state.turns) - 1, joined)
        host.added.append(message.content)
        return joined

    def drop_queue(self) -> None:
        self.state.queue.clear()

    def withdraw(self, message_id: str) -> bool:
        """Drop a queued message whose sender no longer wants it answered; whether it was queued."""
        if not self.is_queued(message_id):
            return False
        self.state.queue = [p for p in self.state.queue if p.message_id != message_id]
        self.withdrawn.add(message_id)
        return True

    def forget_oldest(self, count: int) -> list[Turn]:
        """Remove the oldest `count` turns (they are archived elsewhere); returns them."""
        old = self.state.turns[:count]
        self.state.turns = self.state.turns[count:]
        self.state.archived_turns += len(old)
        self.state.archived_completed_turns += sum(
            1 for t in old if t.outcome == TurnOutcome.COMPLETED
        )
        return old

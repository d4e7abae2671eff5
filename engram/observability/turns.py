"""One turn as the gateway serves it, seen by metrics, traces and logs at once.

Made when a Chat stream accepts a user input (or starts a run); the span it opens is current while
the turn's update is submitted, so the workflow and the activities of the turn join its trace;
`following` is the Chat stream sending the turn back, with its log fields bound and each message
counted, and ends the span with the turn's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from opentelemetry import trace

from engram.observability import logs, tracing
from engram.observability.metrics import TurnWatch
from engram.v1 import agent_pb2

# A turn span's outcome when the gateway stopped serving the turn before it ended.
UNFINISHED = "unfinished"


class ObservedTurn:
    def __init__(self, agent_id: str, message_id: str) -> None:
        # The input has arrived: time to first token and turn duration count from here.
        self.received = time.monotonic()
        self.agent_id = agent_id
        self.message_id = message_id
        self.span = tracing.turn_span(agent_id, message_id)

    @contextmanager
    def submitting(self) -> Iterator[None]:
        """The turn's span is the current one (Temporal's interceptor sends it along)."""
        with trace.use_span(self.span, end_on_exit=False):
            yield

    @contextmanager
    def following(self) -> Iterator[Callable[[agent_pb2.ServerMessage], None]]:
        """While a Chat stream sends the turn: call the function yielded with each message sent."""
        watch = TurnWatch(self.received)
        token = logs.bind(
            agent_id=self.agent_id,
            message_id=self.message_id,
            trace_id=tracing.trace_id(self.span),
        )
        error: BaseException | None = None
        try:
            yield watch.sent
        except BaseException as err:
            error = err
            raise
        finally:
            watch.close(error)
            logs.unbind(token)
            tracing.end_turn_span(self.span, watch.outcome or UNFINISHED, watch.code)

    def abandon(self) -> None:
        """No stream will follow the turn: its submission failed, or its stream ended first."""
        tracing.end_turn_span(self.span, UNFINISHED)

"""What a client call can fail with, and which failures are worth waiting out."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

# Said by gRPC when the other side vanished mid-call (a gateway killed or restarted); the call may
# or may not have reached the agent, so only idempotent requests are sent again.
_DROPPED = ("RST_STREAM", "Stream removed", "Socket closed", "Connection reset", "GOAWAY")


class EngramError(Exception):
    """The gateway refused a request: `code` is the gRPC status, `details` its explanation."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @staticmethod
    def of(err: grpc.RpcError) -> EngramError:
        code, details = _status(err)
        return EngramUnavailable(code, details) if is_transient(err) else EngramError(code, details)


class EngramUnavailable(EngramError):
    """No gateway answered within the client's reconnect budget."""


class TurnFailed(Exception):
    """A turn ended with an error (or was cancelled) instead of a reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


def _status(err: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    # Both the blocking stack's errors (grpc.Call) and grpc.aio's AioRpcError carry these.
    code = getattr(err, "code", None)
    details = getattr(err, "details", None)
    return (
        code() if callable(code) else grpc.StatusCode.UNKNOWN,
        (details() if callable(details) else str(err)) or "",
    )


def is_transient(err: grpc.RpcError) -> bool:
    """A dropped connection or a gateway that is not (yet) there, as opposed to a refusal."""
    code, details = _status(err)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        # CANCELLED reaches a caller only from the server's side here (a gateway shutting down):
        # the client never cancels a call it is still reading.
        return True
    return code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and any(
        sign in details for sign in _DROPPED
    )


@dataclass
class Backoff:
    """Exponential delays with jitter, within a total budget counted from the first failure."""

    budget: float
    initial: float = 0.1
    maximum: float = 2.0
    _delay: float = 0.0
    _deadline: float | None = None

    def next_delay(self) -> float | None:
        """How long to wait before the next attempt; None once the budget is spent."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.budget
        if now >= self._deadline:
            return None
        self._delay = min(self.maximum, self._delay * 2 or self.initial)
        return min(self._delay * random.uniform(0.8, 1.2), self._deadline - now)

    def reset(self) -> None:
        """Progress was made: the next failure starts a new budget."""
        self._delay = 0.0
        self._deadline = None

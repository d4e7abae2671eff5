"""The secret that workers and gateways share, so only workers may use the internal TokenRelay.

Without it, anyone who can reach a gateway's port and knows an agent id and a message id could
read a turn's text as it is generated (`Received`) or inject text into a client's stream
(`Publish`). Workers send it as call metadata; the relay compares it in constant time. A gateway
with no secret configured serves the relay only while it runs open (no API keys): as soon as keys
are required, an unconfigured relay refuses everyone (live tokens then stop, and clients get each
turn whole when it ends, from the durable record).
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable

from engram.auth.metadata import Pairs

ENV = "ENGRAM_RELAY_SECRET"
METADATA_KEY = "x-engram-relay-secret"


def configured() -> str:
    return os.environ.get(ENV, "")


def ensure_configured() -> str:
    """The process's secret, made up now if none was set (`engram dev` runs its own worker and
    gateway in one process, so a fresh secret each start is enough)."""
    secret = configured()
    if not secret:
        secret = os.environ[ENV] = secrets.token_urlsafe(32)
    return secret


def call_metadata(secret: str) -> tuple[tuple[str, str], ...]:
    return ((METADATA_KEY, secret),) if secret else ()


class RelayGuard:
    """Decides whether a TokenRelay call came from a worker."""

    def __init__(self, secret: str, auth_required: Callable[[], bool] = lambda: False) -> None:
        self._secret = secret.encode()
        self._auth_required = auth_required

    def refusal(self, metadata: Pairs) -> str | None:
        """Why the call is refused, or None if it may proceed."""
        if not self._secret:
            if self._auth_required():
                return f"the token relay is internal and this gateway has no {ENV}"
            return None
        for name, value in metadata:
            if name == METADATA_KEY:
                presented = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(presented, self._secret):
                    return None
        return "the token relay is internal to Engram: workers only"

"""With encryption on, logs carry no conversation content: no URL a tool fetched, no tool output.

Encryption keeps conversations off Temporal's and the transcript store's disks; a log line that
quotes them would undo that. `keep_out()` (called once, after logging is configured, when keys are
set) drops HTTP clients' request lines, which name every URL fetched, and strips the details of
exceptions the Temporal SDK logs for failed activities and workflow tasks, whose messages quote
tool errors and their inputs. Engram's own lines that would quote content pass it through
`withheld`. Ids, types and counts stay, so a line still says what failed where.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from engram.codec.keyring import KEYS_FILE_VARIABLE, KEYS_VARIABLE

# Loggers that name each request's URL at INFO.
HTTP_CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore")
# Loggers whose exception details may quote a conversation (tool errors, model output).
SDK_LOGGERS = ("temporalio",)

_on = False


def encryption_configured(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get(KEYS_VARIABLE) or env.get(KEYS_FILE_VARIABLE))


def active() -> bool:
    return _on


def withheld(text: str, summary: str) -> str:
    """`text` for a log line, or `summary` (holding no content) while content is kept out."""
    return summary if _on else text


class ContentFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(HTTP_CLIENT_LOGGERS) and record.levelno < logging.WARNING:
            return False
        if record.exc_info and record.name.startswith(SDK_LOGGERS):
            error = record.exc_info[1]
            kind = type(error).__name__ if error is not None else "error"
            record.msg = f"{record.getMessage()} ({kind}; details withheld: encryption is on)"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def keep_out() -> None:
    """Keep content out of every log line from here on (idempotent)."""
    global _on
    _on = True
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, ContentFilter) for f in handler.filters):
            handler.addFilter(ContentFilter())
